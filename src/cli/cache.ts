import type { Command } from 'commander';
import { type CorruptEntry, FeatureCache } from '../cache/feature-cache.js';
import { parseFeatureKey } from '../cache/keys.js';
import { fingerprintsInUse } from '../extract/in-use.js';
import { type RunMeta, runKey } from '../extract/run-meta.js';
import { commandLine, type CommonFlags, defineCommand } from './command.js';

interface Flags extends CommonFlags {
  cache: string;
  repair?: boolean;
  dryRun?: boolean;
}

function withCache(cmd: Command): Command {
  return cmd.option('--cache <dir>', 'cache directory', './cache');
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('inspect and maintain a feature cache');
  withCache(
    defineCommand<Flags>(cache, 'stats', 'samples, bytes, and entries per fingerprint', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      const s = await c.stats();
      out.result(s, () =>
        [
          `${s.samples} samples, ${s.bytes} bytes`,
          ...s.fingerprints.map((x) => `  ${x.fingerprint.slice(0, 16)}  ${x.entries} entries, ${x.views} views, generation ${x.generation}, ${x.bytes} bytes`),
        ].join('\n'),
      );
    }),
  );
  withCache(
    defineCommand<Flags>(cache, 'verify', 'check every entry’s header and CRC; exit 1 if any is corrupt', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      const r = await c.verify({ repair: f.repair === true });
      const corrupt = await describeCorrupt(c, r.corrupt);
      const rerun = r.repaired > 0 ? await rerunCommands(c, f.cache, corrupt) : [];
      out.result({ ...r, corrupt, ...(r.repaired > 0 ? { rerun } : {}) }, () =>
        [
          `checked ${r.checked}, corrupt ${r.corrupt.length}${r.repaired > 0 ? `, deleted ${r.repaired}` : ''}`,
          ...corrupt.map((x) => `  ${x.fingerprint.slice(0, 16)} sample ${x.source ?? x.sampleId ?? x.key}: ${x.reason} (${x.detail})`),
          ...rerun.map((x) => `re-extract the ${x.samples} deleted sample(s) of ${x.fingerprint.slice(0, 16)} with: ${x.command}`),
          ...(!r.ok && !f.repair ? ['run `splitfit cache verify --repair` to delete them, then rerun cache-features to re-extract them'] : []),
        ].join('\n'),
      );
      if (!r.ok) process.exitCode = 1;
    }).option('--repair', 'delete corrupt entries (cache-features then re-extracts them)'),
  );
  withCache(
    defineCommand<Flags>(cache, 'gc', 'drop feature namespaces whose model no longer matches, after saying which', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      const use = await fingerprintsInUse(c);
      for (const s of use.stale) out.warn(`drop ${s.fingerprint.slice(0, 16)}: ${s.reason}`);
      const r = await c.gc(use.inUse, { dryRun: f.dryRun === true });
      out.result({ ...r, kept: use.inUse, dryRun: f.dryRun === true }, () =>
        r.dropped.length === 0 ? 'nothing to drop' : `${f.dryRun ? 'would drop' : 'dropped'} ${r.dropped.map((d) => `${d.fingerprint.slice(0, 16)} (${d.entries} entries)`).join(', ')}`,
      );
    }).option('--dry-run', 'only say what would be dropped'),
  );
  withCache(
    defineCommand<Flags>(cache, 'clear', 'delete everything in the cache', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      await c.clear();
      out.result({ cleared: true }, () => `cleared ${f.cache}`);
    }),
  );
}

/** A corrupt entry with the sample it belongs to: its id and, when the cache knows it, its source file. */
interface CorruptSample extends CorruptEntry {
  sampleId?: string;
  source?: string;
}

async function describeCorrupt(cache: FeatureCache, corrupt: readonly CorruptEntry[]): Promise<CorruptSample[]> {
  const ids = corrupt.map((c) => parseFeatureKey(c.key)?.sampleId);
  const known = ids.filter((id): id is string => id !== undefined);
  const records = known.length > 0 ? await cache.getSamples(known) : [];
  const source = new Map(known.map((id, i) => [id, records[i]?.source]));
  return corrupt.map((c, i) => {
    const sampleId = ids[i];
    const from = sampleId === undefined ? undefined : source.get(sampleId);
    return { ...c, ...(sampleId === undefined ? {} : { sampleId }), ...(from === undefined ? {} : { source: from }) };
  });
}

/**
 * The cache-features command that re-extracts the deleted entries of each fingerprint, rebuilt from the
 * run recorded in the cache: cached samples are skipped, so it extracts exactly the deleted ones.
 */
async function rerunCommands(cache: FeatureCache, dir: string, corrupt: readonly CorruptSample[]): Promise<{ fingerprint: string; samples: number; command: string }[]> {
  const byFingerprint = new Map<string, number>();
  for (const c of corrupt) byFingerprint.set(c.fingerprint, (byFingerprint.get(c.fingerprint) ?? 0) + 1);
  const out: { fingerprint: string; samples: number; command: string }[] = [];
  for (const [fingerprint, samples] of byFingerprint) {
    const run = await cache.getMeta<RunMeta>(runKey(fingerprint));
    const command = run
      ? [
          'splitfit cache-features',
          `--model ${quote(run.model)}`,
          `--boundary ${quote(run.boundary)}`,
          `--data ${quote(run.data)}`,
          `--cache ${quote(dir)}`,
          `--preprocess ${quote(run.preprocess)}`,
          ...(run.dtype !== 'float32' ? [`--dtype ${run.dtype}`] : []),
          ...(run.classNames ? [`--class-names ${quote(run.classNames.join(','))}`] : []),
          ...(run.augment ? [`--augment ${quote(run.augment)}`, `--views ${run.views}`, `--seed ${run.seed}`, ...(run.plainView0 ? ['--plain-view0'] : [])] : []),
        ].join(' ')
      : `splitfit cache-features --cache ${quote(dir)} with the model, boundary and data that produced fingerprint ${fingerprint} (no run is recorded for it)`;
    out.push({ fingerprint, samples, command });
  }
  return out;
}

/** Quotes a shell word when it needs it. */
function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}
