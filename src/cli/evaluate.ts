import type { Command } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { PREPROCESS_PRESETS } from '../data/preprocess.js';
import { SplitfitError } from '../errors.js';
import { evaluate, verdict } from '../infer/evaluate.js';
import { backendOption, type CommonFlags, defineCommand, useBackend } from './command.js';
import { positiveInt } from './parse.js';

interface Flags extends CommonFlags {
  model: string;
  data: string;
  compareModes?: boolean;
  batchSize: number;
  preprocess?: string;
  classNames?: string;
  report?: string;
  backend: BackendChoice;
}

export { verdict };

export function registerEvaluate(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'evaluate', 'loss, accuracy and AUC of a model on labeled data; --compare-modes detects the BatchNorm gap', async (out, f, _args, { signal }) => {
    await useBackend(out, f.backend);
    const r = await evaluate({
      model: f.model,
      data: f.data,
      batchSize: f.batchSize,
      compareModes: f.compareModes === true,
      signal,
      ...(f.preprocess === undefined ? {} : { preprocess: f.preprocess }),
      ...(f.classNames === undefined ? {} : { classNames: f.classNames.split(',') }),
      ...(f.report === undefined ? {} : { report: f.report }),
    });
    out.result(r, () => {
      const lines = [`n ${r.n}: loss ${r.loss.toFixed(4)}, accuracy ${r.accuracy.toFixed(4)}${r.auc === undefined ? '' : `, AUC ${r.auc.toFixed(4)}`}`];
      if (r.modes) {
        const m = r.modes;
        lines.push(
          `training mode:  loss ${m.training.loss.toFixed(4)}, accuracy ${m.training.accuracy.toFixed(4)}`,
          `inference mode: loss ${m.inference.loss.toFixed(4)}, accuracy ${m.inference.accuracy.toFixed(4)}`,
          `accuracy gap ${m.accuracyGap.toFixed(4)} — ${verdict(m.accuracyGap)}`,
        );
      }
      const width = Math.max(5, ...r.perClass.map((m) => m.label.length));
      lines.push(`${'class'.padEnd(width)}  precision  recall      F1  support      AUC`);
      for (const m of r.perClass) {
        lines.push(`${m.label.padEnd(width)}  ${m.precision.toFixed(4).padStart(9)}  ${m.recall.toFixed(4).padStart(6)}  ${m.f1.toFixed(4).padStart(6)}  ${String(m.support).padStart(7)}  ${m.auc === undefined ? '      —' : m.auc.toFixed(4).padStart(7)}`);
      }
      if (r.report) lines.push(`wrote ${r.report} (confusion matrix, per-class scores, misclassified samples)`);
      return lines.join('\n');
    });
  });
  cmd
    .requiredOption('--model <model.json>', 'stitched model (or any tfjs LayersModel)')
    .requiredOption('--data <spec>', 'class folders, a manifest, or an IDX images file')
    .option('--compare-modes', 'also run in training mode on a copy and report the gap')
    .option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 32)
    .option('--preprocess <name>', `preprocessing preset: ${PREPROCESS_PRESETS.join(' | ')} (when the model has no splitfit.json)`)
    .option('--class-names <a,b,…>', 'IDX only: names for the numeric labels')
    .option('--report <file>', "also write an HTML report; the model folder's report.html gains an evaluation section")
    .addHelpText('after', '\nExample:\n  splitfit evaluate --model model/model.json --data photos-test/ --report model/report.html\n');
  backendOption(cmd);
}
