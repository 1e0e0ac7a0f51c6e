/**
 * The commands the crash sweep kills, each with the state it starts from. A scenario's `prepare`
 * builds that state in the work folder with ordinary (unshimmed) CLI runs; the sweep copies it
 * before every trial, so every kill starts from the same bytes.
 */
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { featuresSublevelName } from '../../src/cache/keys.js';
import { POOLED_SUFFIX } from '../../src/cache/pooled.js';
import type { ToyFixture } from '../helpers/reliability.js';
import { CLI } from '../helpers/cli.js';
import { cliEnv, runNode } from './shim.js';

export interface SweepContext {
  fixture: ToyFixture & { validation: string };
  /** `model.json` path or bundled name, and its boundary. */
  model: string;
  boundary: string;
  /** Everything a scenario writes lives under here (the shim counts only this folder). */
  work: string;
  cache: string;
  out: string;
  /** `--backend …` and the like, appended to every command. */
  extraArgs: string[];
  /** A spare folder outside `work` for scenario set-up files. */
  scratch: string;
}

export interface Scenario {
  /** The name the report prints; `--command` takes it or `id`. */
  name: string;
  /** The same in one shell word. */
  id: string;
  /** Builds the starting state under `ctx.work` (which exists and is empty). */
  prepare(ctx: SweepContext): Promise<void>;
  /** The command killed and rerun. */
  args(ctx: SweepContext): string[];
  /** Whether the command writes `--out` (so the old-or-new folder invariant applies). */
  writesOut: boolean;
  /** Exit statuses of a successful run. @default [0] */
  okStatuses?: number[];
}

/** Runs the CLI to completion; throws with its stderr when it fails (set-up must not fail). */
export async function cli(args: string[]): Promise<{ stdout: string; json: Record<string, unknown> }> {
  const r = await runNode([CLI, ...args], cliEnv(), 300_000);
  if (r.status !== 0) throw new Error(`splitfit ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(last) as Record<string, unknown>;
  } catch {
    // not a --json call
  }
  return { stdout: r.stdout, json };
}

const cacheFeatures = (ctx: SweepContext, extra: string[] = []): string[] => [
  'cache-features', '--model', ctx.model, '--boundary', ctx.boundary, '--data', ctx.fixture.data, '--cache', ctx.cache, '--batch-size', '4', '--json', ...extra, ...ctx.extraArgs,
];

const AUGMENT = ['--augment', 'flip:h', '--views', '1', '--seed', '3'];

const trainHead = (ctx: SweepContext, extra: string[] = []): string[] => ['train-head', '--cache', ctx.cache, '--out', ctx.out, '--batch-size', '4', '--lr', '0.001', '--json', ...extra, ...ctx.extraArgs];

/**
 * Fills the cache and writes an earlier train-head output into `--out`: another head (an extra
 * dense layer, so other weight sizes), seed and epoch count, so a folder mixing the two runs
 * also fails the folder's own checks (manifest vs shard sizes).
 */
async function cacheAndOldOut(ctx: SweepContext, extract: string[] = []): Promise<void> {
  await cli(cacheFeatures(ctx, extract));
  await cli(trainHead(ctx, ['--epochs', '1', '--seed', '1', '--head', 'gap,dense:4:relu,dense:N:softmax']));
}

/** Flips one payload byte of the first feature entry, so `cache verify` finds one corrupt entry. */
async function corruptOneEntry(cacheDir: string): Promise<void> {
  const db = new Level<string, string>(cacheDir, { createIfMissing: false });
  await db.open();
  try {
    const fps = (await db.sublevel<string, unknown>('meta', { valueEncoding: 'json' }).get('fingerprints')) as string[];
    const sub = db.sublevel<string, Uint8Array>(featuresSublevelName(fps[0]!), { valueEncoding: 'view' });
    for await (const [key, value] of sub.iterator({ limit: 1 })) {
      const bytes = Buffer.from(value);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
      await sub.put(key, bytes);
    }
  } finally {
    await db.close();
  }
}

/** Writes the cache's format record back to `version` (its creation time kept), as an older splitfit left it. */
async function setFormatVersion(cacheDir: string, version: number): Promise<void> {
  const db = new Level<string, string>(cacheDir, { createIfMissing: false });
  await db.open();
  try {
    const meta = db.sublevel<string, { version: number; createdAt: string }>('meta', { valueEncoding: 'json' });
    await meta.put('format', { ...(await meta.get('format'))!, version });
  } finally {
    await db.close();
  }
}

/** Deletes every entry of the cache's pooled namespaces (`<fingerprint>.gap`), leaving them registered. */
async function emptyPooledNamespaces(cacheDir: string): Promise<void> {
  const db = new Level<string, string>(cacheDir, { createIfMissing: false });
  await db.open();
  try {
    const fps = (await db.sublevel<string, unknown>('meta', { valueEncoding: 'json' }).get('fingerprints')) as string[];
    for (const fp of fps.filter((f) => f.endsWith(POOLED_SUFFIX))) await db.sublevel(featuresSublevelName(fp), { valueEncoding: 'view' }).clear();
  } finally {
    await db.close();
  }
}

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'cache-features',
    id: 'cache-features',
    writesOut: false,
    prepare: async () => undefined,
    args: (ctx) => cacheFeatures(ctx),
  },
  {
    // The first writable open of an older cache upgrades its format record, in the header batch:
    // after a kill the record is the old one or the new one, and a rerun finishes the upgrade.
    name: 'cache-features (upgrades a format-1 cache)',
    id: 'cache-features-upgrade',
    writesOut: false,
    prepare: async (ctx) => {
      // Other entries already there (the validation images, not made the current run).
      await cli(cacheFeatures({ ...ctx, fixture: { ...ctx.fixture, data: ctx.fixture.validation } }, ['--record', 'data']));
      await setFormatVersion(ctx.cache, 1);
    },
    args: (ctx) => cacheFeatures(ctx),
  },
  {
    name: 'train-head',
    id: 'train-head',
    writesOut: true,
    prepare: (ctx) => cacheAndOldOut(ctx),
    args: (ctx) => trainHead(ctx, ['--epochs', '2']),
  },
  {
    // A new --out: after a kill it must be absent or the whole folder (committed in a hidden sibling, renamed into place).
    name: 'train-head into a new --out',
    id: 'train-head-new-out',
    writesOut: true,
    prepare: async (ctx) => void (await cli(cacheFeatures(ctx))),
    args: (ctx) => trainHead(ctx, ['--epochs', '2']),
  },
  {
    name: 'train-head --validation-data',
    id: 'train-head-validation',
    writesOut: true,
    prepare: (ctx) => cacheAndOldOut(ctx),
    args: (ctx) => trainHead(ctx, ['--epochs', '2', '--validation-data', ctx.fixture.validation]),
  },
  {
    name: 'train-head --refresh-every',
    id: 'train-head-refresh',
    writesOut: true,
    prepare: (ctx) => cacheAndOldOut(ctx, AUGMENT),
    args: (ctx) => trainHead(ctx, ['--epochs', '2', '--refresh-every', '1']),
  },
  {
    // A new --out: after a kill it must be absent or the whole export (it is renamed into place complete).
    name: 'export --quantize',
    id: 'export',
    writesOut: true,
    prepare: async (ctx) => {
      await cli(cacheFeatures(ctx));
      await cli(['train-head', '--cache', ctx.cache, '--out', join(ctx.work, 'model'), '--batch-size', '4', '--lr', '0.001', '--epochs', '1', '--json', ...ctx.extraArgs]);
    },
    args: (ctx) => ['export', join(ctx.work, 'model'), '--out', ctx.out, '--quantize', 'uint8', '--json', ...ctx.extraArgs],
  },
  {
    // cache-features writes the pooled namespace with the maps; emptied here (as a cache made before
    // that, or after `cache verify --repair` dropped entries, has it), this run makes it again. The
    // earlier output's head is not gap-first, so it never read it.
    name: 'train-head (makes the pooled namespace)',
    id: 'train-head-pooled',
    writesOut: true,
    prepare: async (ctx) => {
      await cli(cacheFeatures(ctx));
      await emptyPooledNamespaces(ctx.cache);
      await cli(trainHead(ctx, ['--epochs', '1', '--seed', '1', '--head', 'flatten,dense:4:relu,dense:N:softmax']));
    },
    args: (ctx) => trainHead(ctx, ['--epochs', '2', '--memory-budget-mb', '1']),
  },
  {
    name: 'cache gc',
    id: 'cache-gc',
    writesOut: false,
    // Two fingerprints; the first one's model is deleted afterwards, so gc drops it.
    prepare: async (ctx) => {
      const stale = join(ctx.scratch, 'stale-model');
      await rm(stale, { recursive: true, force: true });
      await cp(join(ctx.fixture.dir, 'toy'), stale, { recursive: true });
      await cli(['cache-features', '--model', join(stale, 'model.json'), '--boundary', ctx.fixture.boundary, '--data', ctx.fixture.data, '--cache', ctx.cache, '--batch-size', '4', '--json', ...ctx.extraArgs]);
      await rm(stale, { recursive: true, force: true });
      await cli(cacheFeatures(ctx));
    },
    args: (ctx) => ['cache', 'gc', '--cache', ctx.cache, '--json'],
  },
  {
    name: 'cache clear',
    id: 'cache-clear',
    writesOut: false,
    prepare: async (ctx) => void (await cli(cacheFeatures(ctx))),
    args: (ctx) => ['cache', 'clear', '--cache', ctx.cache, '--json'],
  },
  {
    name: 'cache verify --repair',
    id: 'cache-verify-repair',
    writesOut: false,
    prepare: async (ctx) => {
      await cli(cacheFeatures(ctx));
      await corruptOneEntry(ctx.cache);
    },
    args: (ctx) => ['cache', 'verify', '--repair', '--cache', ctx.cache, '--json'],
    // Exit 1 says corrupt entries were found (and deleted); a rerun after the deletion finds none.
    okStatuses: [0, 1],
  },
];

export function scenarioNamed(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name || x.id === name);
  if (!s) throw new Error(`--command must be one of ${SCENARIOS.map((x) => x.id).join(', ')} (or the names: ${SCENARIOS.map((x) => JSON.stringify(x.name)).join(', ')}); received ${JSON.stringify(name)}`);
  return s;
}
