import type { Command } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { FeatureCache } from '../cache/feature-cache.js';
import { SplitfitError } from '../errors.js';
import { OPTIMIZERS, type OptimizerName } from '../train/step.js';
import { trainHead } from '../train/train-head.js';
import { assertWritableFolder, backendOption, commandLine, type CommonFlags, defineCommand, useBackend } from './command.js';
import { choice, classWeights, fraction, nonNegativeInt, positiveInt, positiveNumber } from './parse.js';

interface Flags extends CommonFlags {
  cache: string;
  out?: string;
  head?: string;
  epochs: number;
  batchSize: number;
  optimizer: OptimizerName;
  lr: number;
  validationSplit?: number;
  validationData?: string;
  earlyStopping?: number;
  classWeights?: 'balanced' | number[];
  seed: number;
  fingerprint?: string;
  memoryBudgetMb?: number;
  refreshEvery?: number;
  lockBn?: boolean;
  backend: BackendChoice;
}

export function registerTrainHead(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'train-head', 'train a head on cached features, then write the stitched model', async (out, f) => {
    const started = performance.now();
    if (!f.out) throw new SplitfitError('SPLITFIT_USAGE', 'missing --out <dir>');
    // Checked before training, so a bad --out does not cost the training run.
    await assertWritableFolder(f.out, '--out');
    // Never creates a cache: a wrong --cache is an error, not a new empty cache.
    await using cache = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
    await useBackend(out, f.backend);
    const result = await trainHead({
      cache,
      out: f.out,
      epochs: f.epochs,
      batchSize: f.batchSize,
      optimizer: f.optimizer,
      learningRate: f.lr,
      seed: f.seed,
      ...(f.head === undefined ? {} : { head: f.head }),
      ...(f.validationSplit === undefined ? {} : { validationSplit: f.validationSplit }),
      ...(f.validationData === undefined ? {} : { validationData: f.validationData }),
      ...(f.earlyStopping === undefined ? {} : { earlyStopping: { patience: f.earlyStopping } }),
      ...(f.classWeights === undefined ? {} : { classWeights: f.classWeights }),
      ...(f.fingerprint === undefined ? {} : { fingerprint: f.fingerprint }),
      ...(f.memoryBudgetMb === undefined ? {} : { memoryBudget: f.memoryBudgetMb * 2 ** 20 }),
      ...(f.refreshEvery === undefined ? {} : { refreshEvery: f.refreshEvery }),
      ...(f.lockBn ? { lockBatchNorm: true } : {}),
      onProgress: (e) => {
        if (e.type === 'start') out.info(`training on ${e.samples} samples (${e.mode}), validating on ${e.validation}, ${e.epochs} epochs`);
        else if (e.type === 'epoch') {
          const { type: _t, epoch, viewsRead: _v, ...log } = e;
          out.progress('epoch', epoch, f.epochs, log);
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
      return `trained ${result.epochs} epochs: loss ${h.loss[last]!.toFixed(4)} acc ${h.acc[last]!.toFixed(4)}${val}\nwrote ${result.out} (model.json = stitched model, head/, history.json, splitfit.json) in ${summary.seconds.toFixed(1)} s`;
    });
  });
  cmd
    .option('--cache <dir>', 'cache directory written by cache-features', './cache')
    .option('--out <dir>', 'output folder')
    .option('--head <spec>', 'head spec, e.g. gap,dense:256:relu,dropout:0.5,dense:N:softmax')
    .option('--epochs <n>', 'epochs', positiveInt('--epochs'), 10)
    .option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 32)
    .option('--optimizer <name>', OPTIMIZERS.join(' | '), choice('--optimizer', OPTIMIZERS), 'adam')
    .option('--lr <x>', 'learning rate', positiveNumber('--lr'), 0.001)
    .option('--validation-split <f>', 'seeded hold-out fraction', fraction('--validation-split'))
    .option('--validation-data <spec>', 'separate validation data (folder, manifest or IDX)')
    .option('--early-stopping <patience>', 'stop after this many epochs without improvement', positiveInt('--early-stopping'))
    .option('--class-weights <w>', '"balanced" or a comma list, one weight per class', classWeights)
    .option('--seed <n>', 'seed for init, split and shuffles', nonNegativeInt('--seed'), 0)
    .option('--fingerprint <fp>', 'train on this cached run instead of the last one')
    .option('--refresh-every <R>', 'augmented caches: new generation of views every R epochs, extracted while training', positiveInt('--refresh-every'))
    .option('--lock-bn', 'original: heads: keep the pretrained BatchNorm layers frozen, in inference mode')
    .option('--memory-budget-mb <n>', 'hold features in memory up to this size, else stream from LevelDB', positiveInt('--memory-budget-mb'));
  backendOption(cmd);
}

