import type { Command } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { PREPROCESS_PRESETS } from '../data/preprocess.js';
import { SplitfitError } from '../errors.js';
import { evaluate, type EvaluateResult, verdict } from '../infer/evaluate.js';
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

const f4 = (v: number | undefined): string => (v === undefined ? '—' : v.toFixed(4));

/** The human form of a multilabel or regression evaluation (the JSON form is the result itself). */
function describeTask(r: EvaluateResult): string {
  const lines: string[] = [];
  if (r.regression) {
    const m = r.regression;
    lines.push(`n ${r.n}: MAE ${f4(m.mae)}, RMSE ${f4(m.rmse)}, R² ${f4(m.r2)}, Spearman ${f4(m.spearman)}, Pearson ${f4(m.pearson)}`);
    if (m.perTarget.length > 1) for (const t of m.perTarget) lines.push(`  ${t.name}: MAE ${f4(t.mae)}, RMSE ${f4(t.rmse)}, R² ${f4(t.r2)}, Spearman ${f4(t.spearman)}`);
  }
  if (r.regressionModes) {
    const m = r.regressionModes;
    lines.push(
      `training mode:  MSE ${f4(m.training.mse)}, Spearman ${f4(m.training.spearman)}`,
      `inference mode: MSE ${f4(m.inference.mse)}, Spearman ${f4(m.inference.spearman)}`,
      `MSE gap ${f4(m.mseGap)}, Spearman gap ${f4(m.spearmanGap)} — ${m.flagged ? 'the BatchNorm/`fit` discrepancy: retrain with splitfit or lockBatchNorm' : 'training and inference mode agree'} (${m.rule})`,
    );
  }
  if (r.multilabel) {
    const m = r.multilabel;
    lines.push(`n ${r.n}: macro AUC ${f4(m.macroAuc)}, micro AUC ${f4(m.microAuc)}, macro F1 ${f4(m.macroF1)}, micro F1 ${f4(m.microF1)}, subset accuracy ${f4(m.subsetAccuracy)}, Hamming loss ${f4(m.hammingLoss)}`);
    const width = Math.max(5, ...m.perLabel.map((l) => l.label.length));
    lines.push(`${'label'.padEnd(width)}  threshold  precision  recall      F1  support      AUC`);
    for (const l of m.perLabel) {
      lines.push(`${l.label.padEnd(width)}  ${l.threshold.toFixed(3).padStart(9)}  ${l.precision.toFixed(4).padStart(9)}  ${l.recall.toFixed(4).padStart(6)}  ${l.f1.toFixed(4).padStart(6)}  ${String(l.support).padStart(7)}  ${f4(l.auc).padStart(7)}`);
    }
  }
  if (r.multiLabelModes) {
    const m = r.multiLabelModes;
    lines.push('per label, training mode vs inference mode:');
    for (const l of m.perLabel) {
      lines.push(`  ${l.label}: accuracy ${f4(l.training.accuracy)} vs ${f4(l.inference.accuracy)} (majority ${f4(l.majorityRate)}), AUC ${f4(l.training.auc)} vs ${f4(l.inference.auc)}${l.flagged ? '  FLAGGED' : ''}`);
    }
    lines.push(`${m.flagged.length === 0 ? 'no label flagged' : `flagged: ${m.flagged.join(', ')} — probabilities out of scale: retrain with splitfit or lockBatchNorm`}; max accuracy gap ${f4(m.maxAccuracyGap)} (${m.rule})`);
  }
  return lines.join('\n');
}

export function registerEvaluate(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'evaluate', 'metrics of a model on labeled data (classes, label sets or targets, as the model\'s task says); --compare-modes detects the BatchNorm gap', async (out, f, _args, { signal }) => {
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
      if (r.task !== undefined) return describeTask(r);
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
