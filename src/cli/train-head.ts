import { type Command, Option } from 'commander';
import { join } from 'node:path';
import type { BackendChoice } from '../backend/resolve.js';
import { FeatureCache } from '../cache/feature-cache.js';
import { SplitfitError } from '../errors.js';
import { LR_SCHEDULES, type LrSchedule } from '../train/fit.js';
import { OPTIMIZERS, type OptimizerName } from '../train/step.js';
import { QUANTIZE_CHOICES, type Quantize } from '../model/quantize.js';
import { validateTrainHeadOptions } from '../job/options.js';
import { type ChosenSettings, trainHead } from '../job/train-head.js';
import { checkOutputFolder } from '../output/folder.js';
import { assertWritableFolder, backendOption, commandLine, type CommonFlags, defineCommand, useBackend } from './command.js';
import { classWeights, fraction, nonNegativeInt, positiveInt, positiveNumber } from './parse.js';
import { REGRESSION_LOSSES, type RegressionLoss } from '../train/losses.js';

interface Flags extends CommonFlags {
  cache: string;
  out: string;
  head?: string;
  epochs?: number;
  batchSize?: number;
  optimizer?: OptimizerName;
  lr?: number;
  validationSplit?: number;
  validationData?: string;
  earlyStopping?: number;
  classWeights?: 'balanced' | number[];
  seed?: number;
  fingerprint?: string;
  memoryBudgetMb?: number;
  refreshEvery?: number;
  lockBn?: boolean;
  foldBn: boolean;
  quantize?: Quantize;
  weightDecay?: number;
  labelSmoothing?: number;
  lrSchedule?: LrSchedule;
  search?: boolean;
  searchFolds?: number;
  searchTrials?: number;
  searchSeconds?: number;
  poolFeatures: boolean;
  loss?: RegressionLoss;
  posWeight?: boolean;
  tuneThreshold?: boolean;
  backend: BackendChoice;
}

function nonNegativeNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new SplitfitError('SPLITFIT_USAGE', `${flag} needs a finite number ≥ 0, got "${value}"`);
    return n;
  };
}

/** Quotes a shell word only when it needs it. */
const shellWord = (w: string): string => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

/**
 * The explicit command that trains `settings` without a search: this invocation's own flags, minus
 * the search flags, with the chosen head, learning rate, epochs, weight decay and label smoothing.
 */
export function reproduceCommand(argv: readonly string[], settings: ChosenSettings): string {
  const drop = new Set(['--search', '--search-folds', '--search-trials', '--search-seconds', '--head', '--lr', '--epochs', '--weight-decay', '--label-smoothing', '--json', '--verbose']);
  const takesValue = new Set(['--search-folds', '--search-trials', '--search-seconds', '--head', '--lr', '--epochs', '--weight-decay', '--label-smoothing']);
  const kept: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [flag] = argv[i]!.split('=');
    if (drop.has(flag!)) {
      if (takesValue.has(flag!) && !argv[i]!.includes('=')) i++;
      continue;
    }
    kept.push(argv[i]!);
  }
  const chosen = ['--head', settings.head, '--lr', String(settings.learningRate), '--epochs', String(settings.epochs)];
  if (settings.weightDecay > 0) chosen.push('--weight-decay', String(settings.weightDecay));
  if (settings.labelSmoothing > 0) chosen.push('--label-smoothing', String(settings.labelSmoothing));
  return ['splitfit', 'train-head', ...kept, ...chosen].map(shellWord).join(' ');
}

export function registerTrainHead(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'train-head', 'train a head on cached features, then write the stitched model', async (out, f, _args, { signal }) => {
    const started = performance.now();
    const options = {
      out: f.out,
      head: f.head,
      epochs: f.epochs,
      batchSize: f.batchSize,
      optimizer: f.optimizer,
      learningRate: f.lr,
      seed: f.seed,
      validationSplit: f.validationSplit,
      validationData: f.validationData,
      earlyStopping: f.earlyStopping === undefined ? undefined : { patience: f.earlyStopping },
      classWeights: f.classWeights,
      fingerprint: f.fingerprint,
      memoryBudget: f.memoryBudgetMb === undefined ? undefined : f.memoryBudgetMb * 2 ** 20,
      refreshEvery: f.refreshEvery,
      lockBatchNorm: f.lockBn,
      foldBatchNorm: f.foldBn,
      quantize: f.quantize,
      weightDecay: f.weightDecay,
      labelSmoothing: f.labelSmoothing,
      lrSchedule: f.lrSchedule,
      search:
        f.search === true || f.searchFolds !== undefined || f.searchTrials !== undefined || f.searchSeconds !== undefined
          ? { folds: f.searchFolds, trials: f.searchTrials, seconds: f.searchSeconds }
          : undefined,
      poolFeatures: f.poolFeatures,
      loss: f.loss,
      positiveWeights: f.posWeight,
      tuneThresholds: f.tuneThreshold,
      signal,
    };
    // Checked before the cache opens and the model loads, so bad flags or a bad --out cost nothing.
    const resolved = validateTrainHeadOptions(options);
    await assertWritableFolder(f.out, '--out');
    await checkOutputFolder(f.out);
    // Never creates a cache: a wrong --cache is an error, not a new empty cache.
    await using cache = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
    await useBackend(out, f.backend);
    if (resolved.search === false && (resolved.learningRate === undefined || resolved.epochs === undefined)) {
      out.info('choosing ' + [resolved.learningRate === undefined ? '--lr' : '', resolved.epochs === undefined ? '--epochs' : ''].filter(Boolean).join(' and ') + ' on a hold-out of the training data (give them to skip this)');
    }
    let total = resolved.epochs ?? 0;
    const result = await trainHead({
      ...options,
      cache,
      onProgress: (e) => {
        if (e.type === 'start') {
          total = e.epochs;
          out.info(`training on ${e.samples} samples (${e.mode}), validating on ${e.validation}, ${e.epochs} epochs`);
        } else if (e.type === 'epoch') {
          const { type: _t, epoch, viewsRead: _v, ...log } = e;
          out.epoch(epoch, total, log);
        } else if (e.type === 'auto-trial') {
          const t = e.trial;
          out.info(t.diverged !== undefined ? `  lr ${t.learningRate}: diverged, skipped` : `  lr ${t.learningRate}: hold-out acc ${t.valAcc!.toFixed(4)} loss ${t.valLoss!.toFixed(4)} at epoch ${t.epochs}`);
        } else if (e.type === 'search-trial') {
          out.progress('search', e.done, e.total, e.row ? { head: e.row.config.head, learningRate: e.row.config.learningRate, mean: e.row.mean, sd: e.row.sd } : { diverged: true });
        } else if (e.type === 'generation') {
          out.info(`epoch ${e.epoch}: now on generation ${e.generation} (extracted in ${e.extractSeconds.toFixed(1)} s; training waited ${e.waitedSeconds.toFixed(1)} s)`);
        }
      },
    });
    const summary = {
      epochs: result.epochs,
      history: result.history,
      generations: result.generations,
      waitedSeconds: result.history.generations.reduce((t, g) => t + g.waitedSeconds, 0),
      out: result.out,
      backend: result.backend,
      fingerprint: result.fingerprint,
      labels: result.labels,
      task: result.task,
      mode: result.mode,
      settings: result.settings,
      ...(result.history.bestEpoch !== undefined ? { bestEpoch: result.history.bestEpoch } : {}),
      ...(result.auto ? { auto: result.auto } : {}),
      ...(result.search ? { search: { leaderboard: result.search.leaderboard, winner: result.search.winner, tried: result.search.tried, stoppedBy: result.search.stoppedBy, command: reproduceCommand(process.argv.slice(3), result.settings) } } : {}),
      seconds: (performance.now() - started) / 1000,
    };
    out.result(summary, () => {
      const h = result.history;
      const last = h.loss.length - 1;
      // acc is the task's "higher is better" score: accuracy, per-label accuracy (multilabel) or R² (regress).
      const accName = result.task.task === 'regress' ? 'R²' : 'acc';
      const val = h.valAcc ? `, val loss ${h.valLoss![last]!.toFixed(4)} ${accName} ${h.valAcc[last]!.toFixed(4)}` : '';
      const st = result.settings;
      const lines: string[] = [];
      if (result.search) {
        const r = result.search;
        lines.push(`search: ${r.tried} of ${r.grid} configurations, ${r.folds}-fold ${r.metric} (stopped by ${r.stoppedBy}):`);
        for (const row of r.leaderboard.slice(0, 10)) {
          lines.push(`  ${String(row.rank).padStart(2)}. ${row.mean.toFixed(4)} ± ${row.sd.toFixed(4)}  ${row.config.head}  lr ${row.config.learningRate}  wd ${row.config.weightDecay}  ls ${row.config.labelSmoothing}  ${row.epochs} epochs`);
        }
        lines.push(`the winner, without --search: ${summary.search!.command}`);
      } else if (result.auto) {
        const a = result.auto;
        lines.push(a.method === 'sweep' ? `chose lr ${st.learningRate}, ${st.epochs} epochs on ${a.holdouts} hold-outs of ${a.holdout} training samples` : `too few samples (or features streamed) for the automatic choice: lr ${st.learningRate}, ${st.epochs} epochs`);
      }
      const best = h.bestEpoch !== undefined ? ` (kept the weights of epoch ${h.bestEpoch}, the best)` : '';
      return [
        ...lines,
        `trained ${result.epochs} epochs${result.task.task === 'classify' ? '' : ` (${result.task.task})`}: loss ${h.loss[last]!.toFixed(4)} ${accName} ${h.acc[last]!.toFixed(4)}${val}${best}`,
        ...(result.task.thresholds ? [`thresholds${result.task.thresholdsTuned ? ' (tuned on the validation data)' : ''}: ${result.labels.map((l, j) => `${l} ${result.task.thresholds![j]!.toFixed(3)}`).join(', ')}`] : []),
        `wrote ${result.out} (model.json = stitched model, head/, history.json, splitfit.json, report.html, committed as one) in ${summary.seconds.toFixed(1)} s`,
        `report: ${join(result.out, 'report.html')} (open it in a browser)`,
        `next: splitfit evaluate --model ${join(result.out, 'model.json')} --data <held-out data> --report ${join(result.out, 'report.html')}`,
      ].join('\n');
    });
  });
  cmd
    .option('--cache <dir>', 'cache directory written by cache-features', './cache')
    .requiredOption('--out <dir>', 'output folder (created; an earlier train-head output there is replaced as one step)')
    .option('--head <spec>', 'head spec, e.g. gap,dense:256:relu,dropout:0.5,dense:N:softmax (default: gap,dense:N:softmax for feature maps)')
    .option('--epochs <n>', 'epochs (default: chosen on a hold-out of the training data)', positiveInt('--epochs'))
    .option('--batch-size <n>', 'batch size (default: 32)', positiveInt('--batch-size'))
    .addOption(new Option('--optimizer <name>', 'optimizer (default: adam)').choices(OPTIMIZERS))
    .option('--lr <x>', 'learning rate (default: chosen on a hold-out of the training data)', positiveNumber('--lr'))
    .option('--weight-decay <x>', 'L2 penalty on the head kernels (default: 0)', nonNegativeNumber('--weight-decay'))
    .option('--label-smoothing <x>', 'label smoothing in [0, 1) (default: 0)', fraction('--label-smoothing'))
    .addOption(new Option('--lr-schedule <name>', 'learning-rate schedule (default: constant)').choices(LR_SCHEDULES))
    .option('--search', 'k-fold search over lr, weight decay, dropout, label smoothing and head shapes; trains the winner')
    .option('--search-folds <k>', 'folds of --search (default: 3)', positiveInt('--search-folds'))
    .option('--search-trials <n>', 'configurations --search tries (default: 8)', positiveInt('--search-trials'))
    .option('--search-seconds <s>', 'stop --search starting configurations after this long (default: no limit)', positiveNumber('--search-seconds'))
    .option('--no-pool-features', 'train gap heads on the maps every step instead of on features pooled once')
    .option('--validation-split <f>', 'seeded hold-out fraction', fraction('--validation-split'))
    .option('--validation-data <spec>', 'separate validation data (folder, manifest or IDX)')
    .option('--early-stopping <patience>', 'stop after this many epochs without improvement; keeps the best epoch\'s weights', positiveInt('--early-stopping'))
    .option('--class-weights <w>', 'classify: "balanced" or a comma list, one weight per class', classWeights)
    .addOption(new Option('--loss <name>', 'regress runs: loss on the standardised targets (default: mse)').choices(REGRESSION_LOSSES))
    .option('--pos-weight', "multilabel runs: weigh each label's positives by neg/pos of the training data")
    .option('--tune-threshold', "multilabel runs: tune each label's threshold for the best F1 on the validation data (default: 0.5)")
    .option('--seed <n>', 'seed for init, split and shuffles (default: 0)', nonNegativeInt('--seed'))
    .option('--fingerprint <fp>', 'train on this cached run (any unique prefix) instead of the last one')
    .option('--refresh-every <R>', 'augmented caches: new generation of views every R epochs, extracted while training', positiveInt('--refresh-every'))
    .option('--lock-bn', 'original: heads: keep the pretrained BatchNorm layers frozen, in inference mode')
    .option('--no-fold-bn', "export the base's original BatchNorm/Dropout layers instead of folding them (folded: the model behaves the same under a further fit)")
    .addOption(new Option('--quantize <dtype>', "store model.json's weights quantized (stock tf.loadLayersModel dequantizes them; head/ stays float32)").choices(QUANTIZE_CHOICES))
    .option('--memory-budget-mb <n>', 'hold features in memory up to this size, else stream from LevelDB (default: 1024)', positiveInt('--memory-budget-mb'))
    .addHelpText('after', '\nExample:\n  splitfit train-head --cache ./cache --out model/ --epochs 20 --validation-split 0.2\n');
  backendOption(cmd);
}
