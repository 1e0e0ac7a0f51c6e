/**
 * Crash-point sweep (issue #11): kills the real CLI (`node dist/cli/main.js …`) with SIGKILL at the
 * k-th file-system mutation under the job's work folder — its own and LevelDB's, seen through the
 * LD_PRELOAD shim in shim/crash-shim.c — for every k, then reruns the same command to completion
 * and checks that nothing was lost or silently changed:
 *
 * - right after the kill, `--out` as a splitfit reader sees it (an interrupted commit finished, see
 *   src/output/commit.ts) is absent, the old folder or the new one, whole; and the cache's
 *   current run (`run:current`) is the training data, never the validation data;
 * - after the rerun: it succeeds; `splitfit cache verify` passes; the current run is the training
 *   data; every raw LevelDB key and value equals the uninterrupted reference run's (JSON meta
 *   records without timestamps); `--out` equals the reference's, file for file (history.json and
 *   splitfit.json without timestamps/durations), nothing extra.
 *
 * A kill is a process crash, not a power cut: data already written stays in the page cache, so the
 * sweep checks atomicity and recovery, not fsync ordering.
 *
 * Usage: npm run crash-sweep [-- --command <name>] [--from K] [--to K] [--every N] [--long] [--jobs N] [--backend B] [--keep] [--verbose]
 * Prints one line per command, `crash-sweep <command>: N points, N consistent`, the first
 * inconsistent points under it, and exits 1 when any point is inconsistent.
 */
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { makeToyFixture } from '../helpers/reliability.js';
import { SCENARIOS, type Scenario, scenarioNamed, type SweepContext } from './scenarios.js';
import { buildShim, cliEnv, readTrace, runNode, runShimmed, type TraceCall } from './shim.js';
import { checkOutFolder, classifyFolder, currentRunOf, diffFolders, type FolderSnapshot, snapshotAsReaderSees, snapshotCacheNormalized, snapshotFolder, summarizeCacheDiff } from './state.js';
import { CLI } from '../helpers/cli.js';
import { diffSnapshots } from '../helpers/reliability.js';

export interface SweepOptions {
  /** Scenario names (see scenarios.ts); all by default. */
  commands?: string[];
  /** First and last crash point to try (1-based, inclusive). @default every point */
  from?: number;
  to?: number;
  /** More data and the real backbone (mobilenet_v2). @default false */
  long?: boolean;
  /** `--backend` of every CLI run. @default 'tensorflow' */
  backend?: string;
  /** Root folder (fixture, templates, work); a fresh temp folder by default, removed unless `keep`. */
  root?: string;
  keep?: boolean;
  /** Progress and report lines. @default none */
  log?: (line: string) => void;
  /** Also log every consistent point. */
  verbose?: boolean;
  /** Points tried at once, each in its own work folder. @default 2 (CI has 2 cores) */
  jobs?: number;
  /** Try only every n-th point of the range (a quick look; CI tries every point). @default 1 */
  every?: number;
}

export interface PointResult {
  /** The crash point: the process was killed before its k-th counted call. */
  k: number;
  /** That call in the reference run's trace. */
  call?: TraceCall;
  /** False when the run finished before reaching call k (the count varies by a few calls between runs). */
  killed: boolean;
  /** State of `--out` right after the kill: absent | old | new | mixed. */
  outAfterKill?: string;
  problems: string[];
}

export interface CommandReport {
  name: string;
  /** Counted calls of the uninterrupted reference run (= crash points). */
  points: number;
  tried: number;
  consistent: number;
  /** Points the killed run never reached. */
  notReached: number;
  /** Problems of the reference run itself (a command that fails uninterrupted). */
  referenceProblems: string[];
  failures: PointResult[];
  /** Counted calls per libc function in the reference run. */
  ops: Record<string, number>;
  /** Reference-run counts of the workers, when they differ (the count varies by a few calls between runs). */
  pointCounts?: number[];
  /** Wall time of the points, and worker-seconds per point. */
  seconds: number;
  secondsPerTrial: number;
}

interface Reference {
  trace: TraceCall[];
  cache: Map<string, string> | undefined;
  out: FolderSnapshot;
  oldOut: FolderSnapshot;
}

async function restore(template: string, work: string): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await cp(template, work, { recursive: true });
}

/** Checks after a completed (re)run: verify passes, current run is the training data, bytes equal the reference. */
async function checkFinal(ctx: SweepContext, scenario: Scenario, ref: Reference | undefined): Promise<string[]> {
  const problems: string[] = [];
  const verify = await runNode([CLI, 'cache', 'verify', '--cache', ctx.cache, '--json'], cliEnv(), 120_000);
  const v = parseLast(verify.stdout);
  if (verify.status !== 0 || v['ok'] !== true) problems.push(`cache verify: exit ${verify.status ?? verify.signal}, ${short(JSON.stringify(v['corrupt'] ?? v['error'] ?? v))}`);
  problems.push(...(await checkCurrentRun(ctx)));
  if (scenario.writesOut) problems.push(...(await checkOutFolder(ctx.out)));
  if (ref) {
    try {
      const cache = await snapshotCacheNormalized(ctx.cache);
      const diff = cache === undefined || ref.cache === undefined ? (cache === ref.cache ? [] : [`cache ${cache ? 'present' : 'absent'}, reference ${ref.cache ? 'present' : 'absent'}`]) : diffSnapshots(ref.cache, cache);
      if (diff.length) problems.push(`cache differs from the uninterrupted run: ${list(summarizeCacheDiff(diff))}`);
    } catch (err) {
      problems.push(`cache does not open: ${short(String(err))}`);
    }
    if (scenario.writesOut) {
      const diff = diffFolders(ref.out, await snapshotFolder(ctx.out));
      if (diff.length) problems.push(`--out differs from the uninterrupted run: ${list(diff)}`);
    }
  }
  return problems;
}

/** The current-run invariant: `run:current`, when present, is the training data. */
async function checkCurrentRun(ctx: SweepContext): Promise<string[]> {
  try {
    const run = await currentRunOf(ctx.cache);
    if (run && run.data !== ctx.fixture.data) return [`current run is ${run.data === ctx.fixture.validation ? 'the VALIDATION data' : 'not the training data'} (run:current.data = ${run.data})`];
    return [];
  } catch (err) {
    return [`cache does not open: ${short(String(err))}`];
  }
}

const parseLast = (stdout: string): Record<string, unknown> => {
  try {
    return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>;
  } catch {
    return {};
  }
};
const short = (s: string, n = 240): string => (s.length > n ? `${s.slice(0, n)}…` : s);
const list = (lines: string[], n = 4): string => `${lines.slice(0, n).join('; ')}${lines.length > n ? ` (+${lines.length - n} more)` : ''}`;

/** One worker's copy of a scenario: its own work folder, starting state and reference run. */
interface Prepared {
  ctx: SweepContext;
  template: string;
  args: string[];
  ref: Reference;
  referenceProblems: string[];
}

async function prepareScenario(scenario: Scenario, ctx: SweepContext, shim: string): Promise<Prepared> {
  const okStatuses = scenario.okStatuses ?? [0];
  const template = join(ctx.scratch, 'template');
  await rm(ctx.work, { recursive: true, force: true });
  await mkdir(ctx.work, { recursive: true });
  await scenario.prepare(ctx);
  await rm(template, { recursive: true, force: true });
  await cp(ctx.work, template, { recursive: true });
  const oldOut = await snapshotFolder(ctx.out);

  // The uninterrupted reference run, counted: its trace names every crash point.
  await restore(template, ctx.work);
  const traceFile = join(ctx.scratch, 'reference.trace');
  await rm(traceFile, { force: true });
  const args = scenario.args(ctx);
  const run = await runShimmed(args, { shim, workDir: ctx.work, trace: traceFile });
  const referenceProblems: string[] = [];
  if (run.status === null || !okStatuses.includes(run.status)) referenceProblems.push(`uninterrupted run exited ${run.status ?? run.signal}: ${short(run.stderr.trim().split('\n').at(-1) ?? '')}`);
  const trace = await readTrace(traceFile);
  const ref: Reference = { trace, cache: await snapshotCacheNormalized(ctx.cache), out: await snapshotFolder(ctx.out), oldOut };
  referenceProblems.push(...(await checkFinal(ctx, scenario, undefined)));
  return { ctx, template, args, ref, referenceProblems };
}

/** Kills the command at call k, checks the state, reruns it, checks again. */
async function tryPoint(scenario: Scenario, p: Prepared, shim: string, k: number): Promise<PointResult> {
  const { ctx, args, ref } = p;
  const okStatuses = scenario.okStatuses ?? [0];
  await restore(p.template, ctx.work);
  const killedRun = await runShimmed(args, { shim, workDir: ctx.work, killAt: k });
  const point: PointResult = { k, ...(ref.trace[k - 1] ? { call: ref.trace[k - 1]! } : {}), killed: killedRun.signal === 'SIGKILL' && !killedRun.timedOut, problems: [] };
  if (killedRun.timedOut) point.problems.push('killed run hung (time limit)');
  if (!point.killed && (killedRun.status === null || !okStatuses.includes(killedRun.status))) point.problems.push(`run that was not killed exited ${killedRun.status ?? killedRun.signal}`);
  if (scenario.writesOut) {
    // The promise is about what a reader sees: a kill mid-commit is rolled forward by the next reader.
    const seen = await snapshotAsReaderSees(ctx.out).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
    const c = seen instanceof Error ? { state: 'unreadable', problems: [`a reader cannot open --out: ${seen.message}`] } : classifyFolder(seen, ref.oldOut, ref.out);
    point.outAfterKill = c.state;
    if (c.problems.length) point.problems.push(...c.problems.map((x) => `after kill: ${x}`), ...(await checkOutFolder(ctx.out)).map((x) => `after kill: ${x}`));
  }
  point.problems.push(...(await checkCurrentRun(ctx)).map((x) => `after kill: ${x}`));

  const rerun = await runNode([CLI, ...args], cliEnv(), 300_000);
  if (rerun.status === null || !okStatuses.includes(rerun.status)) {
    const message = (parseLast(rerun.stdout)['error'] as { message?: string } | undefined)?.message ?? rerun.stderr.trim().split('\n').at(-1) ?? '';
    point.problems.push(`rerun exited ${rerun.status ?? rerun.signal}: ${short(String(message))}`);
  }
  point.problems.push(...(await checkFinal(ctx, scenario, ref)).map((x) => `after rerun: ${x}`));
  return point;
}

async function sweepCommand(scenario: Scenario, workers: SweepContext[], shim: string, options: SweepOptions): Promise<CommandReport> {
  const log = options.log ?? (() => undefined);
  const prepared = await Promise.all(workers.map((ctx) => prepareScenario(scenario, ctx, shim)));
  const { ref, referenceProblems } = prepared[0]!;
  const counts = [...new Set(prepared.map((p) => p.ref.trace.length))];
  const ops: Record<string, number> = {};
  for (const c of ref.trace) ops[c.op] = (ops[c.op] ?? 0) + 1;

  const from = Math.max(1, options.from ?? 1);
  const to = Math.min(ref.trace.length, options.to ?? ref.trace.length);
  const results: PointResult[] = [];
  const every = Math.max(1, options.every ?? 1);
  let next = from;
  const started = performance.now();
  // Each worker takes the next point; the points are independent (each starts from the template).
  await Promise.all(
    prepared.map(async (p) => {
      for (;;) {
        const k = next;
        next += every;
        if (k > to) break;
        const point = await tryPoint(scenario, p, shim, k);
        results.push(point);
        if (options.verbose) log(`  ${describePoint(point)}`);
      }
    }),
  );
  results.sort((a, b) => a.k - b.k);
  const tried = results.length;
  const seconds = (performance.now() - started) / 1000;
  return {
    name: scenario.name,
    points: ref.trace.length,
    ...(counts.length > 1 ? { pointCounts: counts } : {}),
    tried,
    consistent: results.filter((r) => r.problems.length === 0).length,
    notReached: results.filter((r) => !r.killed).length,
    referenceProblems,
    failures: results.filter((r) => r.problems.length > 0),
    ops,
    seconds,
    secondsPerTrial: tried ? (seconds * prepared.length) / tried : 0,
  };
}

/** Inconsistent points printed in full per command (the rest as a list of numbers; --verbose prints all). */
const SHOWN = 5;

/** `[1,2,3,7,9,10]` → `1-3,7,9-10`. */
export function ranges(ks: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ks.length; ) {
    let j = i;
    while (j + 1 < ks.length && ks[j + 1] === ks[j]! + 1) j++;
    out.push(i === j ? String(ks[i]) : `${ks[i]}-${ks[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

export function describePoint(p: PointResult): string {
  const call = p.call ? `${p.call.op} ${p.call.path.replace(/.*\/work\//, '')}` : '?';
  const what = p.problems.length ? p.problems.join('; ') : 'consistent';
  return `point ${p.k} (${call})${p.killed ? '' : ' [not reached]'}${p.outAfterKill ? ` out:${p.outAfterKill}` : ''}: ${what}`;
}

/** Runs the sweep; never throws for an inconsistent point (see the reports). */
export async function runSweep(options: SweepOptions = {}): Promise<CommandReport[]> {
  const log = options.log ?? (() => undefined);
  const root = options.root ?? (await mkdtemp(join(tmpdir(), 'splitfit-crash-sweep-')));
  try {
    await mkdir(root, { recursive: true });
    const shim = await buildShim(root);
    // CI-sized: 2 classes × 4 training images (+1 validation image each); every point costs three
    // CLI starts, and the points grow with the cache's bytes (LevelDB rewrites its log as a table on open).
    const fixture = options.long ? await makeToyFixture(join(root, 'fixture'), 24, 1 / 4, 3) : await makeToyFixture(join(root, 'fixture'), 5, 1 / 5, 2);
    if (fixture.validation === undefined) throw new Error('the fixture has no validation folder');
    const workers: SweepContext[] = [];
    for (let i = 0; i < Math.max(1, options.jobs ?? 2); i++) {
      const work = join(root, `w${i}`, 'work');
      const ctx: SweepContext = {
        fixture: { ...fixture, validation: fixture.validation },
        model: options.long ? 'mobilenet_v2' : fixture.model,
        boundary: options.long ? 'out_relu' : fixture.boundary,
        work,
        cache: join(work, 'cache'),
        out: join(work, 'out'),
        extraArgs: ['--backend', options.backend ?? 'tensorflow'],
        scratch: join(root, `w${i}`, 'scratch'),
      };
      await mkdir(ctx.scratch, { recursive: true });
      workers.push(ctx);
    }
    const scenarios = options.commands?.length ? options.commands.map(scenarioNamed) : SCENARIOS;
    const reports: CommandReport[] = [];
    for (const scenario of scenarios) {
      const report = await sweepCommand(scenario, workers, shim, options);
      reports.push(report);
      const range = report.tried === report.points ? '' : ` (tried ${report.tried})`;
      log(`crash-sweep ${report.name}: ${report.points} points${range}, ${report.consistent} consistent${report.notReached ? `, ${report.notReached} not reached` : ''} [${report.seconds.toFixed(0)} s, ${report.secondsPerTrial.toFixed(2)} s/point per worker${report.pointCounts ? `; workers counted ${report.pointCounts.join('/')} calls` : ''}]`);
      for (const p of report.referenceProblems) log(`  reference run: ${p}`);
      if (!options.verbose) {
        for (const p of report.failures.slice(0, SHOWN)) log(`  ${describePoint(p)}`);
        if (report.failures.length > SHOWN) log(`  … also inconsistent: points ${ranges(report.failures.slice(SHOWN).map((p) => p.k))}`);
      }
    }
    return reports;
  } finally {
    if (options.keep || options.root !== undefined) log(`work folder kept: ${root}`);
    else await rm(root, { recursive: true, force: true });
  }
}

/** Failed points or a failed reference run. */
export const isConsistent = (r: CommandReport): boolean => r.failures.length === 0 && r.referenceProblems.length === 0;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const int = (name: string): number | undefined => {
    const v = flag(name);
    if (v === undefined) return undefined;
    if (!/^[1-9]\d*$/.test(v)) throw new Error(`${name} must be a positive integer, received ${JSON.stringify(v)}`);
    return Number(v);
  };
  const VALUED = ['--command', '--from', '--to', '--jobs', '--every', '--backend'];
  const SWITCHES = ['--long', '--keep', '--verbose'];
  for (let i = 0; i < argv.length; i++) {
    if (VALUED.includes(argv[i]!)) i++;
    else if (!SWITCHES.includes(argv[i]!)) throw new Error(`unknown argument ${JSON.stringify(argv[i])}; valid: ${[...VALUED.map((f) => `${f} <value>`), ...SWITCHES].join(', ')}`);
  }
  const commands = argv.flatMap((a, i) => (a === '--command' && argv[i + 1] !== undefined ? [argv[i + 1]!] : []));
  const from = int('--from');
  const to = int('--to');
  if (from !== undefined && to !== undefined && from > to) throw new Error(`--from ${from} is after --to ${to}; give --from K --to K to rerun one point`);
  const backend = flag('--backend') ?? process.env['SPLITFIT_TEST_BACKEND'] ?? 'tensorflow';
  // Loads tfjs-node in this process too (the fixture's model is saved here), so tfjs does not print its banner.
  const { resolveBackend } = await import('../../src/backend/resolve.js');
  await resolveBackend(backend as 'auto');
  const started = performance.now();
  const reports = await runSweep({
    commands,
    ...(from === undefined ? {} : { from }),
    ...(to === undefined ? {} : { to }),
    long: argv.includes('--long'),
    backend,
    keep: argv.includes('--keep'),
    verbose: argv.includes('--verbose'),
    ...(int('--jobs') === undefined ? {} : { jobs: int('--jobs')! }),
    ...(int('--every') === undefined ? {} : { every: int('--every')! }),
    log: (line) => console.log(line),
  });
  const tried = reports.reduce((n, r) => n + r.tried, 0);
  console.log(`crash-sweep: ${tried} points in ${((performance.now() - started) / 1000).toFixed(0)} s, ${reports.filter((r) => !isConsistent(r)).length} of ${reports.length} commands inconsistent`);
  // The plain closing line CI logs are read for: consistent points passed, inconsistent ones failed.
  const consistent = reports.reduce((n, r) => n + r.consistent, 0);
  console.log(`crash-sweep: ${consistent} passed, ${tried - consistent} failed`);
  process.exitCode = reports.every(isConsistent) ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main().catch((err: unknown) => {
    console.error(`crash-sweep: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 2;
  });
}
