import { type Command, Option } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { FEATURE_DTYPES, type FeatureDType } from '../cache/codec.js';
import { MAX_INDEX, shortFingerprint } from '../cache/keys.js';
import { PREPROCESS_PRESETS } from '../data/preprocess.js';
import { TASKS, type Task } from '../data/types.js';
import { SplitfitError } from '../errors.js';
import { extractFeatures } from '../extract/extract.js';
import { describeRun } from '../extract/prepare.js';
import { backendOption, type CommonFlags, defineCommand, openExistingCache, useBackend } from './command.js';
import { nonNegativeInt, positiveInt, size } from './parse.js';

interface Flags extends CommonFlags {
  model: string;
  boundary?: string;
  data: string;
  cache: string;
  inputSize?: [number, number];
  preprocess?: string;
  batchSize?: number;
  concurrency: number;
  dtype: FeatureDType;
  classNames?: string;
  task?: Task;
  skipBad?: boolean;
  augment?: string;
  views?: number;
  seed: number;
  plainView0?: boolean;
  generation?: number;
  record: 'training' | 'data';
  backend: BackendChoice;
}

const PRESET_SOURCE = { given: '--preprocess', bundled: "the bundled model's", default: 'default: no --preprocess given and not a bundled model' } as const;

export function registerCacheFeatures(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'cache-features', 'run the frozen base once (inference mode) and cache its features in LevelDB', async (out, f, _args, { signal }) => {
    const started = performance.now();
    if (f.views !== undefined && f.augment === undefined) throw new SplitfitError('SPLITFIT_USAGE', '--views needs --augment <spec>');
    // An existing cache is opened first, so a cache in use elsewhere fails before the model loads.
    await using held = await openExistingCache(f.cache);
    const backend = await useBackend(out, f.backend);
    const result = await extractFeatures({
      signal,
      model: f.model,
      data: f.data,
      cache: held ?? f.cache,
      ...(f.batchSize === undefined ? {} : { batchSize: f.batchSize }),
      concurrency: f.concurrency,
      dtype: f.dtype,
      skipBad: f.skipBad === true,
      ...(f.boundary === undefined ? {} : { boundary: f.boundary }),
      ...(f.inputSize === undefined ? {} : { inputSize: f.inputSize }),
      ...(f.preprocess === undefined ? {} : { preprocess: f.preprocess }),
      ...(f.classNames === undefined ? {} : { classNames: f.classNames.split(',') }),
      ...(f.task === undefined ? {} : { task: f.task }),
      ...(f.augment === undefined ? {} : { augment: f.augment, views: f.views ?? 1, seed: f.seed, plainView0: f.plainView0 === true }),
      ...(f.generation === undefined ? {} : { generation: f.generation }),
      record: f.record,
      onProgress: (e) => {
        if (e.type === 'start') out.info(`fingerprint ${shortFingerprint(e.fingerprint)}: ${e.total} samples, ${e.total - e.toExtract} cached, ${e.toExtract} to extract (${backend})`);
        else if (e.type === 'extract') out.progress('extract', e.done, e.total);
        else if (e.type === 'failed') out.warn(`skipped ${e.source}: ${e.reason}`);
        // 'warning' (the cpu backend): useBackend already said so for a fallback; an explicit --backend cpu is the user's choice.
      },
    });
    const { failures, ...rest } = result;
    const summary = { ...rest, failures, seconds: (performance.now() - started) / 1000 };
    out.result(summary, () =>
      [
        ...result.notes.map((n) => `note: ${n}`),
        `extracted ${result.extracted}, skipped ${result.skipped} (cached), failed ${result.failed}, duplicates ${result.duplicates}; ${result.entries} entries for fingerprint ${shortFingerprint(result.fingerprint)}`,
        `features ${JSON.stringify(result.featureShape)} on ${result.backend}; extraction ${result.extractSeconds.toFixed(1)} s, total ${summary.seconds.toFixed(1)} s`,
        `base: input ${result.base.inputSize.join('x')}, preprocess ${result.base.preprocess} (${PRESET_SOURCE[result.base.presetSource]}), batch ${result.base.batchSize}; ${describeRun(result.base.run)}`,
        ...failures.map((x) => `  failed: ${x.source}: ${x.reason}`),
      ].join('\n'),
    );
  });
  cmd
    .requiredOption('--model <model>', 'model.json path or bundled model name (see `splitfit models`)')
    .option('--boundary <layer>', "freeze boundary: a layer name or index that is a graph cut (default: the bundled model's, e.g. out_relu for mobilenet_v2)")
    .requiredOption('--data <spec>', 'class folders, a .csv/.jsonl manifest (path,label | path,labels | path,target…), or an IDX images file')
    .option('--cache <dir>', 'cache directory', './cache')
    .option('--input-size <HxW>', "resize images to HxW (must match the model's input)", size('--input-size'))
    .option('--preprocess <name>', `preprocessing preset: ${PREPROCESS_PRESETS.join(' | ')} (default: the bundled model's, else unit)`)
    .option('--batch-size <n>', 'samples per base forward pass (default: chosen from the model\'s activation sizes)', positiveInt('--batch-size'))
    .option('--concurrency <n>', 'images decoded at once', positiveInt('--concurrency'), 4)
    .addOption(new Option('--dtype <dtype>', 'feature storage').choices(FEATURE_DTYPES).default('float32'))
    .option('--class-names <a,b,…>', 'IDX only: names for the numeric labels 0,1,…')
    .addOption(new Option('--task <task>', 'manifests: read the targets as this task (default: the columns decide: label → classify, labels → multilabel, target… → regress)').choices(TASKS))
    .option('--skip-bad', 'count undecodable images as failed instead of stopping')
    .option('--augment <spec>', 'cache augmented views: flip:h|v|hv, crop:F, rotate:DEG, brightness:F, contrast:F, noise:F')
    .option('--views <K>', 'augmented views per sample (needs --augment)', positiveInt('--views', MAX_INDEX + 1))
    .option('--seed <n>', 'seed of the augmented views', nonNegativeInt('--seed'), 0)
    .option('--plain-view0', 'view 0 is the un-augmented image')
    .option('--generation <n>', 'generation of the augmented views (what `cache verify --repair` prints to re-extract one)', nonNegativeInt('--generation'))
    .addOption(new Option('--record <role>', 'training: this data set becomes the current training run; data: recorded without becoming it (validation data)').choices(['training', 'data']).default('training'))
    .addHelpText('after', '\nExample:\n  splitfit cache-features --model mobilenet_v2 --data photos/ --cache ./cache\n');
  backendOption(cmd);
}
