import type { Command } from 'commander';
import { type CorruptEntry, FeatureCache, type FingerprintStats, type GenerationStats } from '../cache/feature-cache.js';
import { parseFeatureKey, shortFingerprint } from '../cache/keys.js';
import { isPooledNamespace } from '../cache/pooled.js';
import { collectGarbage } from '../extract/gc.js';
import { listExtracting, listRuns, retireRun, type RunList, type RunMeta, runReferences, shortRunId } from '../extract/run-meta.js';
import { commandLine, type CommonFlags, defineCommand } from './command.js';

interface Flags extends CommonFlags {
  cache: string;
  repair?: boolean;
  dryRun?: boolean;
  retire?: string[];
  dropInterrupted?: boolean;
}

function withCache(cmd: Command): Command {
  return cmd.option('--cache <dir>', 'cache directory', './cache');
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('inspect and maintain a feature cache');
  withCache(
    defineCommand<Flags>(cache, 'stats', 'samples, bytes, and per fingerprint its committed, incomplete, superseded and orphaned entries', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      const { current, runs } = await listRuns(c);
      const interrupted = await listExtracting(c);
      const s = await c.stats({ references: runReferences(runs) });
      const run = runs.find((r) => r.runId === current);
      const currentRun = run === undefined ? null : { runId: run.runId, data: run.data, samples: run.samples.length };
      const unrecorded = interrupted.map((m) => ({ runId: m.runId, data: m.data, samples: m.samples.length, startedAt: m.startedAt }));
      out.result({ ...s, currentRun, interrupted: unrecorded }, () =>
        [
          `${s.samples} samples, ${s.bytes} bytes, ${runs.length} run record(s); current training run: ${run === undefined ? 'none' : `${shortRunId(run.runId)} (${run.data})`}`,
          ...s.fingerprints.map(describeFingerprint),
          ...unrecorded.map(
            (m) => `  interrupted cache-features of ${m.data} (started ${m.startedAt}): its entries count as orphaned until a rerun records it; \`cache gc\` keeps them`,
          ),
        ].join('\n'),
      );
    }),
  );
  withCache(
    defineCommand<Flags>(cache, 'runs', 'the recorded data sets (run records), the current training run marked', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      const list = await listRuns(c);
      out.result(list, () =>
        list.runs.length === 0
          ? 'no run recorded'
          : list.runs
              .map((r) => `${r.runId === list.current ? '*' : ' '} ${shortRunId(r.runId)}  ${r.role}  ${r.samples.length} samples  ${r.data}  (${r.createdAt})`)
              .join('\n'),
      );
    }),
  );
  withCache(
    defineCommand<Flags>(cache, 'verify', 'check every entry’s header and CRC; exit 1 if any is corrupt', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      const r = await c.verify({ repair: f.repair === true });
      const corrupt = await describeCorrupt(c, r.corrupt);
      const rerun = r.repaired > 0 ? rerunCommands(f.cache, corrupt, await listRuns(c)) : [];
      out.result({ ...r, corrupt, ...(r.repaired > 0 ? { rerun } : {}) }, () =>
        [
          `checked ${r.checked}, corrupt ${r.corrupt.length}${r.repaired > 0 ? `, deleted ${r.repaired}` : ''}`,
          ...corrupt.map((x) => `  ${shortFingerprint(x.fingerprint)} sample ${x.source ?? x.sampleId ?? x.key}: ${x.reason} (${x.detail})`),
          ...rerun.map((x) => `re-extract the ${x.samples} deleted sample(s) of ${shortFingerprint(x.fingerprint)} with: ${x.command}`),
          ...(!r.ok && !f.repair ? ['run `splitfit cache verify --repair` to delete them, then rerun cache-features to re-extract them'] : []),
        ].join('\n'),
      );
      if (!r.ok) process.exitCode = 1;
    }).option('--repair', 'delete corrupt entries (cache-features then re-extracts them)'),
  );
  withCache(
    defineCommand<Flags>(
      cache,
      'gc',
      'drop feature namespaces whose model no longer matches, and entries and sample records no run reads, after saying which',
      async (out, f) => {
        await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
        const dryRun = f.dryRun === true;
        const dropInterrupted = f.dropInterrupted === true;
        const { retired: retiring, stale, interrupted, ...r } = await collectGarbage(c, { dryRun, retire: f.retire ?? [], dropInterrupted });
        for (const s of stale) out.warn(`${dryRun ? 'would drop' : 'drop'} ${shortFingerprint(s.fingerprint)}: ${s.reason}`);
        for (const m of interrupted) {
          out.warn(
            dropInterrupted
              ? `${dryRun ? 'would drop' : 'dropped'} what an interrupted cache-features of ${m.data} (started ${m.startedAt}) wrote`
              : `kept what an interrupted cache-features of ${m.data} (started ${m.startedAt}) wrote: rerun it to finish, or pass --drop-interrupted`,
          );
        }
        const verb = dryRun ? 'would free' : 'freed';
        out.result({ ...r, retired: retiring.map((x) => x.runId), stale, interrupted: interrupted.map((m) => ({ runId: m.runId, data: m.data, startedAt: m.startedAt })) }, () =>
          [
            ...retiring.map((x) => `${dryRun ? 'would retire' : 'retired'} run ${shortRunId(x.runId)} (${x.data})`),
            ...r.dropped.map((d) => `${dryRun ? 'would drop' : 'dropped'} ${shortFingerprint(d.fingerprint)}: ${d.entries} entries, ${d.bytes} bytes`),
            ...r.orphaned.map((d) => `${dryRun ? 'would drop' : 'dropped'} ${d.entries} orphaned entries (${d.bytes} bytes) of ${shortFingerprint(d.fingerprint)}: no run references their samples`),
            ...r.superseded.map((d) => `${dryRun ? 'would drop' : 'dropped'} ${d.entries} superseded entries (${d.bytes} bytes) of ${shortFingerprint(d.fingerprint)}: an augmentation or generation no run reads`),
            ...(r.samples > 0 ? [`${dryRun ? 'would drop' : 'dropped'} ${r.samples} sample record(s) no run references`] : []),
            r.freed.entries === 0 && r.samples === 0 ? 'nothing to drop' : `${verb} ${r.freed.entries} entries, ${r.freed.bytes} bytes`,
          ].join('\n'),
        );
      },
    )
      .option('--dry-run', 'only say what would be dropped')
      .option('--drop-interrupted', 'also drop what an interrupted cache-features wrote (kept by default, so its rerun resumes)')
      .option('--retire <runId>', 'retire a run record first (a run id or fingerprint prefix, see `cache runs`); repeatable', collect),
  );
  withCache(
    defineCommand<Flags>(cache, 'retire <runId>', 'retire an old data set’s run record (a run id or fingerprint prefix, see `cache runs`); `cache gc` then reclaims its entries', async (out, f, args) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      const retired = await retireRun(c, args[0]!);
      out.result({ retired: retired.map((r) => r.runId) }, () =>
        retired.length === 0
          ? `no run record ${args[0]!} (retired already)`
          : [...retired.map((r) => `retired run ${shortRunId(r.runId)} (${r.data}, ${r.samples.length} samples)`), 'run `splitfit cache gc` to reclaim the entries only it referenced'].join('\n'),
      );
    }),
  );
  withCache(
    defineCommand<Flags>(cache, 'clear', 'delete everything in the cache', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: commandLine() });
      await c.clear();
      out.result({ cleared: true }, () => `cleared ${f.cache}`);
    }),
  );
}

function describeGeneration(g: GenerationStats): string {
  return `${g.aug === undefined ? '' : `${g.aug} `}generation ${g.generation}: ${g.entries} entries, ${g.bytes} bytes`;
}

function describeFingerprint(x: FingerprintStats): string {
  const committed = x.committed ?? [];
  const incomplete = x.incomplete ?? [];
  return [
    `  ${shortFingerprint(x.fingerprint)}  ${x.entries} entries, ${x.views} views, ${x.bytes} bytes${isPooledNamespace(x.fingerprint) ? ' (pooled vectors of its maps, written with them)' : ''}`,
    ...committed.map((g) => `    committed ${describeGeneration(g)}`),
    ...incomplete.map((g) => `    incomplete ${describeGeneration(g)} (no run has committed it; train-head deletes or resumes it)`),
    ...(x.superseded ?? []).map((g) => `    superseded ${describeGeneration(g)} (no run reads it; \`splitfit cache gc\` drops it)`),
    ...(x.orphaned !== undefined && x.orphaned.entries > 0
      ? [`    orphaned: ${x.orphaned.entries} entries, ${x.orphaned.bytes} bytes (no run references their samples; \`splitfit cache gc\` drops them)`]
      : []),
  ].join('\n');
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
 * The cache-features commands that re-extract the deleted entries: one per run that references
 * a deleted sample (the newest such run of its fingerprint), rebuilt from that run's own record,
 * so a sample of an earlier data set is re-extracted from that data set. Cached samples are
 * skipped, so each command extracts only what is missing. Samples no run references are named
 * as of unknown source.
 */
function rerunCommands(dir: string, corrupt: readonly CorruptSample[], list: RunList): { fingerprint: string; samples: number; command: string }[] {
  const newestFirst = [...list.runs].reverse();
  const groups = new Map<string, { fingerprint: string; run: RunMeta | undefined; samples: Set<string> }>();
  for (const c of corrupt) {
    const id = c.sampleId ?? c.key;
    const run = newestFirst.find((r) => r.fingerprint === c.fingerprint && r.samples.some((s) => s.id === id));
    const group = run?.runId ?? `unknown:${c.fingerprint}`;
    const g = groups.get(group) ?? { fingerprint: c.fingerprint, run, samples: new Set<string>() };
    g.samples.add(id);
    groups.set(group, g);
  }
  return [...groups.values()].map(({ fingerprint, run, samples }) => ({
    fingerprint,
    samples: samples.size,
    command: run
      ? cacheFeaturesCommand(run, dir, run.runId === list.current)
      : `unknown: no run record of fingerprint ${shortFingerprint(fingerprint)} lists ${samples.size === 1 ? 'this sample' : 'these samples'}, so their data set is unknown; ` +
        `rerun \`splitfit cache-features --cache ${quote(dir)}\` with the model, boundary and data that produced them`,
  }));
}

/**
 * The cache-features command line that caches `run`'s data set again, as recorded. Only the
 * current training run is re-recorded as one: any other run gets `--record data`, which keeps
 * its record and leaves the current training run where it is.
 */
function cacheFeaturesCommand(run: RunMeta, dir: string, isCurrent: boolean): string {
  return [
    'splitfit cache-features',
    `--model ${quote(run.model)}`,
    `--boundary ${quote(run.boundary)}`,
    `--data ${quote(run.data)}`,
    `--cache ${quote(dir)}`,
    `--preprocess ${quote(run.preprocess)}`,
    ...(run.dtype !== 'float32' ? [`--dtype ${run.dtype}`] : []),
    ...(run.classNames ? [`--class-names ${quote(run.classNames.join(','))}`] : []),
    ...(run.augment ? [`--augment ${quote(run.augment)}`, `--views ${run.views}`, `--seed ${run.seed}`, ...(run.plainView0 ? ['--plain-view0'] : [])] : []),
    ...(run.augment && run.generation > 0 ? [`--generation ${run.generation}`] : []),
    ...(isCurrent ? [] : ['--record data']),
  ].join(' ');
}

/** Quotes a shell word when it needs it. */
function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}
