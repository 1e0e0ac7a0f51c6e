/**
 * Two real CLI processes on one cache. LevelDB is single-process: while `cache-features` holds the
 * cache, every other command fails at once with SPLITFIT_CACHE_LOCKED naming the holder — no hang, no
 * stack trace, nothing changed — and the holder finishes unharmed. Used one after the other, commands
 * share a cache freely.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendArgs, CLI, runCli } from './helpers/cli.js';
import { makeToyFixture, splitfitStderr, stackLines, type ToyFixture } from './helpers/reliability.js';

let root: string;
let fx: ToyFixture;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-lock-'));
  fx = await makeToyFixture(join(root, 'fx'), 40);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/**
 * Augmented views per sample in the holder's run: 8 × 120 base passes keep it busy for seconds
 * even with the compiled base (the plain 120-image run finished before the others had tried).
 */
const HOLDER_VIEWS = 8;

/** Starts a long cache-features run (mobilenet_v2, 120 images × 8 views) and resolves once it has written a batch. */
function startHolder(cache: string): Promise<{ pid: number; done: Promise<{ status: number | null; last: Record<string, unknown> }>; isRunning: () => boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'cache-features', '--model', 'mobilenet_v2', '--data', fx.data, '--cache', cache, '--batch-size', '8', '--augment', 'flip:h', '--views', String(HOLDER_VIEWS), '--json', ...backendArgs()], {
      env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let running = true;
    let stdout = '';
    let stderr = '';
    let started = false;
    const done = new Promise<{ status: number | null; last: Record<string, unknown> }>((res) => {
      child.on('close', (status) => {
        running = false;
        if (!started) reject(new Error(`holder exited early (${String(status)}): ${stderr}`));
        res({ status, last: JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown> });
      });
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!started && stdout.includes('"event":"extract"')) {
        started = true;
        resolve({ pid: child.pid!, done, isRunning: () => running });
      }
    });
  });
}

describe('a cache in use by another process', () => {
  it('every other command fails at once with SPLITFIT_CACHE_LOCKED naming the holder; the holder finishes unharmed', async () => {
    const cache = join(root, 'cache');
    const holder = await startHolder(cache);
    const attempts: [string, string[]][] = [
      ['cache-features', ['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', cache, ...backendArgs()]],
      ['train-head', ['train-head', '--cache', cache, '--out', join(root, 'out'), ...backendArgs()]],
      ['cache verify', ['cache', 'verify', '--cache', cache]],
      ['cache stats', ['cache', 'stats', '--cache', cache]],
      ['cache gc', ['cache', 'gc', '--cache', cache]],
    ];
    const seconds: Record<string, number> = {};
    for (const [name, args] of attempts) {
      const t0 = performance.now();
      const r = await runCli([...args, '--json']);
      seconds[name] = (performance.now() - t0) / 1000;
      expect(r.status, `${name}: ${r.stderr}`).toBe(1);
      expect(r.json).toEqual({ error: { code: 'SPLITFIT_CACHE_LOCKED', message: expect.any(String) } });
      const lines = splitfitStderr(r.stderr);
      expect(lines, name).toHaveLength(1);
      expect(stackLines(r.stderr)).toEqual([]);
      expect(lines[0]).toContain(`locked by pid ${holder.pid} running "`);
      expect(lines[0]).toContain('cache-features');
      expect(lines[0]).toContain('use another --cache');
      // "At once": a locked-out command does not wait, and cache-features fails before loading a model.
      expect(seconds[name]).toBeLessThan(10);
    }
    expect(holder.isRunning(), 'the holder must still hold the cache while the others try').toBe(true);
    const { status, last } = await holder.done;
    expect(status).toBe(0);
    expect(last).toMatchObject({ total: fx.total, extracted: fx.total * HOLDER_VIEWS, failed: 0, entries: fx.total * HOLDER_VIEWS });
    const verify = await runCli(['cache', 'verify', '--cache', cache, '--json']);
    expect(verify.json).toEqual({ checked: fx.total * HOLDER_VIEWS, corrupt: [], repaired: 0, ok: true });
    expect(await runCli(['train-head', '--cache', cache, '--out', join(root, 'out'), '--epochs', '2', '--json', ...backendArgs()]).then((r) => r.status)).toBe(0);
    console.log(`locked-out commands failed after ${Object.entries(seconds).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ')}`);
  });

  it('the holder is named with its full command line when it opened an existing cache', async () => {
    const cache = join(root, 'cache-2');
    const first = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', cache, '--json', ...backendArgs()]);
    expect(first.status, first.stderr).toBe(0);
    const holder = await startHolder(cache);
    const r = await runCli(['cache', 'stats', '--cache', cache]);
    expect(r.status).toBe(1);
    expect(splitfitStderr(r.stderr)[0]).toContain(`pid ${holder.pid} running "splitfit cache-features --model mobilenet_v2 --data ${fx.data} --cache ${cache}`);
    expect((await holder.done).status).toBe(0);
  });
});
