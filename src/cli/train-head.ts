import { type Command, Option } from 'commander';
import { join } from 'node:path';
import type { BackendChoice } from '../backend/resolve.js';
import { FeatureCache } from '../cache/feature-cache.js';
import { OPTIMIZERS, type OptimizerName } from '../train/step.js';
import { validateTrainHeadOptions } from '../job/options.js';
import { trainHead } from '../job/train-head.js';
import { checkOutputFolder } from '../output/folder.js';
import { assertWritableFolder, backendOption, commandLine, type CommonFlags, defineCommand, useBackend } from './command.js';
import { classWeights, fraction, nonNegativeInt, positiveInt, positiveNumber } from './parse.js';

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
  backend: BackendChoice;
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
      signal,
    };
    // Checked before the cache opens and the model loads, so bad flags or a bad --out cost nothing.
    const resolved = validateTrainHeadOptions(options);
    await assertWritableFolder(f.out, '--out');
    await checkOutputFolder(f.out);
    // Never creates a cache: a wrong --cache is an error, not a new empty cache.
    await using cache = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
    await useBackend(out, f.backend);
    const result = await trainHead({
      ...options,
      cache,
      onProgress: (e) => {
        if (e.type === 'start') out.info(`training on ${e.samples} samples (${e.mode}), validating on ${e.validation}, ${e.epochs} epochs`);
        else if (e.type === 'epoch') {
          const { type: _t, epoch, viewsRead: _v, ...log } = e;
          out.epoch(epoch, resolved.epochs, log);
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
      mode: result.mode,
      seconds: (performance.now() - started) / 1000,
    };
    out.result(summary, () => {
      const h = result.history;
      const last = h.loss.length - 1;
      const val = h.valAcc ? `, val loss ${h.valLoss![last]!.toFixed(4)} acc ${h.valAcc[last]!.toFixed(4)}` : '';
      return [
        `trained ${result.epochs} epochs: loss ${h.loss[last]!.toFixed(4)} acc ${h.acc[last]!.toFixed(4)}${val}`,
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
    .option('--epochs <n>', 'epochs (default: 10)', positiveInt('--epochs'))
    .option('--batch-size <n>', 'batch size (default: 32)', positiveInt('--batch-size'))
    .addOption(new Option('--optimizer <name>', 'optimizer (default: adam)').choices(OPTIMIZERS))
    .option('--lr <x>', 'learning rate (default: 0.001)', positiveNumber('--lr'))
    .option('--validation-split <f>', 'seeded hold-out fraction', fraction('--validation-split'))
    .option('--validation-data <spec>', 'separate validation data (folder, manifest or IDX)')
    .option('--early-stopping <patience>', 'stop after this many epochs without improvement', positiveInt('--early-stopping'))
    .option('--class-weights <w>', '"balanced" or a comma list, one weight per class', classWeights)
    .option('--seed <n>', 'seed for init, split and shuffles (default: 0)', nonNegativeInt('--seed'))
    .option('--fingerprint <fp>', 'train on this cached run (any unique prefix) instead of the last one')
    .option('--refresh-every <R>', 'augmented caches: new generation of views every R epochs, extracted while training', positiveInt('--refresh-every'))
    .option('--lock-bn', 'original: heads: keep the pretrained BatchNorm layers frozen, in inference mode')
    .option('--no-fold-bn', "export the base's original BatchNorm/Dropout layers instead of folding them (folded: the model behaves the same under a further fit)")
    .option('--memory-budget-mb <n>', 'hold features in memory up to this size, else stream from LevelDB (default: 1024)', positiveInt('--memory-budget-mb'))
    .addHelpText('after', '\nExample:\n  splitfit train-head --cache ./cache --out model/ --epochs 20 --validation-split 0.2\n');
  backendOption(cmd);
}
