/**
 * Crash trials: `splitfit cache-features` (the built CLI, a child process) is killed with SIGKILL at a
 * seeded random moment, then the same command runs again to completion. Each trial asserts that
 *
 * - the rerun resumes: it skips at least every sample the killed run reported as written;
 * - `splitfit cache verify` passes (exit 0, `ok: true`, every entry checked);
 * - the cache holds exactly the entries of an uninterrupted reference run, byte for byte
 *   (raw LevelDB values: header, CRC and payload).
 *
 * Run the full set with `npm run crash-trials` (20 trials on the toy model; `--model mobilenet_v2`
 * for the real network, `--trials N`, `--seed S`, `--keep` to keep the work folder).
 * `test/crash.test.ts` runs a few trials of each kind as part of the test suite.
 */
import { rng } from '../../src/random.js';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, runCli } from '../helpers/cli.js';
import { compareRawFeatures, exists, HOLDER_FILE, makeToyFixture, readRawFeatures, type RawFeatures, type ToyFixture } from '../helpers/reliability.js';

export interface KillTrialOptions {
  /** Number of trials. @default 20 */
  trials?: number;
  /** Seed of the kill schedule. @default 1 */
  seed?: number;
  /** `toy` (a small residual CNN saved to disk) or `mobilenet_v2` (the bundled real network). @default 'toy' */
  model?: 'toy' | 'mobilenet_v2';
  /** Samples per forward pass. @default 4 for the toy model (30 batches), 16 for mobilenet_v2 */
  batchSize?: number;
  /** Twemoji PNGs per class (3 classes). @default 40 */
  perClass?: number;
  /** Work folder; a fresh temp folder by default (removed afterwards unless `keep`). */
  workDir?: string;
  keep?: boolean;
  /** Progress lines. @default none */
  log?: (line: string) => void;
  /** Extra CLI arguments, e.g. the backend. */
  extraArgs?: string[];
}

export interface KillRecord {
  /** `event`: killed a seeded delay after the n-th progress event; `time`: at a seeded time after spawn. */
  mode: 'event' | 'time';
  /** Milliseconds after spawn when SIGKILL was sent (or when the run ended on its own). */
  atMs: number;
  /** For `event` kills: the progress event after which the kill was scheduled. */
  afterEvent?: number;
  /** Samples this run had to extract (the `total` of its progress events; undefined before the first). */
  toExtract?: number;
  /** Highest `done` the killed run reported (each report follows a committed batch). */
  lastDone: number;
  /** `SIGKILL`, or `exit 0` when the run finished before the kill. */
  ended: string;
}

export interface TrialOutcome {
  trial: number;
  kills: KillRecord[];
  /** Whether at least one kill landed after the first batch was committed. */
  killedMidExtraction: boolean;
  resume: { status: number; extracted: number; skipped: number; entries: number };
  verify: { status: number; ok: boolean; checked: number };
  identical: boolean;
  problems: string[];
  ok: boolean;
}

export interface KillTrialsReport {
  model: string;
  batchSize: number;
  total: number;
  fingerprint: string;
  referenceSeconds: number;
  outcomes: TrialOutcome[];
  passed: number;
  failed: number;
  /** Trials in which a kill landed after the first committed batch (so the rerun had to resume). */
  midExtraction: number;
}


interface Spec {
  fixture: ToyFixture;
  modelArg: string;
  boundary: string;
  batchSize: number;
  extraArgs: string[];
}

function commandArgs(spec: Spec, cache: string): string[] {
  return ['cache-features', '--model', spec.modelArg, '--boundary', spec.boundary, '--data', spec.fixture.data, '--cache', cache, '--batch-size', String(spec.batchSize), '--json', ...spec.extraArgs];
}

/** Runs cache-features and kills it per the schedule; resolves when the process is gone. */
function runAndKill(args: string[], schedule: { mode: 'event'; afterEvent: number; delayMs: number } | { mode: 'time'; atMs: number }): Promise<KillRecord> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child: ChildProcess = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let buffered = '';
    let events = 0;
    let lastDone = 0;
    let toExtract: number | undefined;
    let killedAt: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    const kill = (): void => {
      if (killedAt !== undefined || child.exitCode !== null) return;
      killedAt = performance.now() - started;
      child.kill('SIGKILL');
    };
    if (schedule.mode === 'time') timer = setTimeout(kill, schedule.atMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let event: { event?: string; done?: number; total?: number } | undefined;
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          continue;
        }
        if (event?.event !== 'extract') continue;
        events++;
        lastDone = Math.max(lastDone, event.done ?? 0);
        if (event.total !== undefined) toExtract = event.total;
        if (schedule.mode === 'event' && events === schedule.afterEvent) timer = setTimeout(kill, schedule.delayMs);
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        mode: schedule.mode,
        atMs: Math.round(killedAt ?? performance.now() - started),
        ...(schedule.mode === 'event' ? { afterEvent: schedule.afterEvent } : {}),
        ...(toExtract === undefined ? {} : { toExtract }),
        lastDone,
        ended: signal ?? `exit ${String(code)}`,
      });
    });
  });
}

async function setUp(options: KillTrialOptions, workDir: string): Promise<Spec> {
  const fixture = await makeToyFixture(join(workDir, 'fixture'), options.perClass ?? 40);
  const mobilenet = options.model === 'mobilenet_v2';
  return {
    fixture,
    modelArg: mobilenet ? 'mobilenet_v2' : fixture.model,
    boundary: mobilenet ? 'out_relu' : fixture.boundary,
    batchSize: options.batchSize ?? (mobilenet ? 16 : 4),
    extraArgs: options.extraArgs ?? [],
  };
}

/** Runs the trials; never throws for a failed trial (see `ok` and `problems`). */
export async function runKillTrials(options: KillTrialOptions = {}): Promise<KillTrialsReport> {
  const log = options.log ?? (() => undefined);
  const trials = options.trials ?? 20;
  const random = rng(options.seed ?? 1);
  const workDir = options.workDir ?? (await mkdtemp(join(tmpdir(), 'splitfit-crash-')));
  try {
    const spec = await setUp(options, workDir);
    const total = spec.fixture.total;

    // The uninterrupted reference run.
    const refCache = join(workDir, 'reference');
    const t0 = performance.now();
    const ref = await runCli(commandArgs(spec, refCache));
    const referenceSeconds = (performance.now() - t0) / 1000;
    if (ref.status !== 0) throw new Error(`reference run failed (exit ${ref.status}): ${ref.stderr}`);
    const fingerprint = String(ref.json['fingerprint']);
    const reference: RawFeatures = await readRawFeatures(refCache);
    if (reference.get(fingerprint)?.size !== total) throw new Error(`reference cache holds ${reference.get(fingerprint)?.size} entries, expected ${total}`);
    const batches = Math.ceil(total / spec.batchSize);
    log(`reference: ${total} samples, ${batches} batches of ${spec.batchSize}, ${referenceSeconds.toFixed(1)} s, fingerprint ${fingerprint.slice(0, 12)}`);

    const outcomes: TrialOutcome[] = [];
    for (let trial = 0; trial < trials; trial++) {
      const cache = join(workDir, `trial-${trial}`);
      const args = commandArgs(spec, cache);
      const kills: KillRecord[] = [];
      const killCount = random() < 0.25 ? 2 : 1;
      for (let k = 0; k < killCount; k++) {
        // Half the kills land after a random committed batch (plus up to one batch's time), half at a
        // random time anywhere in the run, start-up and model loading included.
        const schedule =
          random() < 0.5
            ? { mode: 'event' as const, afterEvent: 1 + Math.floor(random() * Math.max(1, batches - 1)), delayMs: Math.floor(random() * ((referenceSeconds * 1000) / batches)) }
            : { mode: 'time' as const, atMs: Math.floor(random() * referenceSeconds * 1100) };
        kills.push(await runAndKill(args, schedule));
      }
      const problems: string[] = [];
      const last = kills.at(-1)!;
      const resumed = await runCli(args);
      const r = resumed.json as { extracted?: number; skipped?: number; entries?: number; fingerprint?: string };
      const resume = { status: resumed.status, extracted: r.extracted ?? -1, skipped: r.skipped ?? -1, entries: r.entries ?? -1 };
      if (resumed.status !== 0) problems.push(`rerun exited ${resumed.status}: ${resumed.stderr.trim().split('\n').at(-1)}`);
      if (r.fingerprint !== fingerprint) problems.push(`rerun fingerprint ${String(r.fingerprint).slice(0, 12)} ≠ reference`);
      if (resume.extracted + resume.skipped !== total) problems.push(`extracted ${resume.extracted} + skipped ${resume.skipped} ≠ ${total}`);
      if (resume.entries !== total) problems.push(`entries ${resume.entries} ≠ ${total}`);
      // Every batch the killed run reported is committed, so the rerun skips at least those.
      const committed = last.toExtract === undefined ? 0 : total - last.toExtract + last.lastDone;
      const killedMidExtraction = kills.some((k) => k.ended === 'SIGKILL' && k.lastDone > 0);
      if (last.ended === 'SIGKILL' && resume.skipped < committed) problems.push(`rerun skipped ${resume.skipped}, but ${committed} were committed before the kill`);
      if (killedMidExtraction && resume.skipped <= 0) problems.push('killed after the first batch, yet the rerun skipped nothing');

      const verified = await runCli(['cache', 'verify', '--cache', cache, '--json']);
      const v = verified.json as { ok?: boolean; checked?: number; corrupt?: unknown[] };
      const verify = { status: verified.status, ok: v.ok === true, checked: v.checked ?? -1 };
      if (verified.status !== 0 || v.ok !== true) problems.push(`cache verify: exit ${verified.status}, ${JSON.stringify(v)}`);
      // Every namespace's entries: the maps and, for maps, their pooled vectors (written with them).
      const stored = [...reference.values()].reduce((n, values) => n + values.size, 0);
      if (verify.checked !== stored) problems.push(`cache verify checked ${verify.checked} entries, expected ${stored}`);
      if (await exists(join(cache, HOLDER_FILE))) problems.push(`${HOLDER_FILE} left behind after a clean run`);

      const diff = compareRawFeatures(reference, await readRawFeatures(cache));
      if (diff.length > 0) problems.push(`cache differs from the reference: ${diff.slice(0, 5).join('; ')}${diff.length > 5 ? ` (+${diff.length - 5})` : ''}`);

      const outcome: TrialOutcome = { trial, kills, killedMidExtraction, resume, verify, identical: diff.length === 0, problems, ok: problems.length === 0 };
      outcomes.push(outcome);
      const killText = kills.map((k) => `${k.mode}@${k.atMs}ms→${k.ended}${k.lastDone ? ` after ${k.lastDone} done` : ''}`).join(', ');
      log(`trial ${trial}: ${outcome.ok ? 'ok' : 'FAILED'} — kills [${killText}]; rerun extracted ${resume.extracted}, skipped ${resume.skipped}; verify ${verify.ok ? 'ok' : 'BAD'}; ${outcome.identical ? 'identical' : 'DIFFERENT'}${problems.length ? `; ${problems.join('; ')}` : ''}`);
      if (!options.keep) await rm(cache, { recursive: true, force: true });
    }
    const passed = outcomes.filter((o) => o.ok).length;
    return {
      model: options.model ?? 'toy',
      batchSize: spec.batchSize,
      total,
      fingerprint,
      referenceSeconds,
      outcomes,
      passed,
      failed: outcomes.length - passed,
      midExtraction: outcomes.filter((o) => o.killedMidExtraction).length,
    };
  } finally {
    if (!options.keep && options.workDir === undefined) await rm(workDir, { recursive: true, force: true });
    else log(`work folder kept: ${workDir}`);
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const { resolveBackend } = await import('../../src/backend/resolve.js');
  const backend = await resolveBackend((process.env['SPLITFIT_TEST_BACKEND'] as 'auto' | undefined) ?? 'auto');
  const model = (flag('--model') ?? 'toy') as 'toy' | 'mobilenet_v2';
  if (model !== 'toy' && model !== 'mobilenet_v2') throw new Error(`--model must be toy or mobilenet_v2, got ${String(model)}`);
  const report = await runKillTrials({
    model,
    trials: Number(flag('--trials') ?? 20),
    seed: Number(flag('--seed') ?? 1),
    ...(flag('--batch-size') ? { batchSize: Number(flag('--batch-size')) } : {}),
    keep: argv.includes('--keep'),
    extraArgs: ['--backend', process.env['SPLITFIT_TEST_BACKEND'] ?? 'auto'],
    log: (line) => console.log(line),
  });
  const { outcomes, ...summary } = report;
  console.log(JSON.stringify({ ...summary, backend, kills: outcomes.reduce((n, o) => n + o.kills.length, 0) }));
  process.exitCode = report.failed === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
