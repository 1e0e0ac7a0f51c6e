import type { Command } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { PREPROCESS_PRESETS } from '../data/preprocess.js';
import { SplitfitError } from '../errors.js';
import { evaluate } from '../infer/evaluate.js';
import { backendOption, type CommonFlags, defineCommand, useBackend } from './command.js';
import { positiveInt } from './parse.js';

interface Flags extends CommonFlags {
  model: string;
  data: string;
  compareModes?: boolean;
  batchSize: number;
  preprocess?: string;
  classNames?: string;
  backend: BackendChoice;
}

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
    .addHelpText('after', '\nExample:\n  splitfit evaluate --model model/model.json --data photos-test/ --compare-modes\n');
  backendOption(cmd);
}

/**
 * The sign matters: a positive gap is the frozen-BN `fit` signature (fit reported more than predict
 * delivers); a negative one means inference is right but the model's frozen BN layers would use batch
 * statistics under a further `fit` (as every stitched pretrained base does): lock them first.
 */
export function verdict(gap: number): string {
  if (Math.abs(gap) <= 0.02) return 'training and inference mode agree';
  if (gap > 0)
    return 'training mode scores higher than inference: the BatchNorm/`fit` discrepancy (moving statistics drifted or frozen BN trained on batch statistics); retrain with splitfit or lockBatchNorm';
  return 'inference scores higher than training mode: predictions are fine, but frozen BatchNorm layers would see batch statistics under a further `fit`; call lockBatchNorm(model) before fine-tuning it';
}
