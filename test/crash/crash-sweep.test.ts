/**
 * The crash-point sweep's own machinery: the LD_PRELOAD shim counts exactly the file-system
 * mutations under the work folder (none elsewhere, read-only opens excluded), numbers them without
 * gaps or repeats across threads, and kills before the K-th; the folder checks tell an old, new
 * and mixed output apart; and a slice of the real sweep runs end to end.
 * The full sweep is `npm run crash-sweep` (see test/crash/sweep.ts).
 */
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildShim, readTrace, runNode } from './shim.js';
import { checkModelFolder, classifyFolder, stripVolatile, summarizeCacheDiff } from './state.js';
import { ranges, runSweep } from './sweep.js';

let root: string;
let shim: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-shim-test-'));
  shim = await buildShim(root);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The same sequence of sync fs calls in `other` (a sibling whose name extends the work folder's) and in `dir`. */
const OPS_SCRIPT = `
import * as fs from 'node:fs';
const [dir, other] = process.argv.slice(2);
for (const d of [other, dir]) {
  fs.mkdirSync(d + '/a');
  fs.writeFileSync(d + '/a/x', 'hello');
  fs.readFileSync(d + '/a/x');
  const fd = fs.openSync(d + '/a/x', 'r+');
  fs.ftruncateSync(fd, 2);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(d + '/a/x', d + '/a/y');
  fs.unlinkSync(d + '/a/y');
  fs.rmdirSync(d + '/a');
}
`;

/** 64 concurrent writeFile calls: libuv's thread pool runs them on 4 threads at once. */
const THREADS_SCRIPT = `
import { writeFile } from 'node:fs/promises';
const dir = process.argv[2];
await Promise.all(Array.from({ length: 64 }, (_, i) => writeFile(dir + '/f' + i, 'x'.repeat(100))));
`;

function shimEnv(workDir: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, UV_USE_IO_URING: '0', LD_PRELOAD: shim, SPLITFIT_CRASH_DIR: workDir, ...extra };
}

async function folders(name: string): Promise<{ dir: string; other: string; script: string; trace: string }> {
  const base = join(root, name);
  const dir = join(base, 'work');
  const other = join(base, 'work-other');
  await mkdir(dir, { recursive: true });
  await mkdir(other, { recursive: true });
  const script = join(base, 'script.mjs');
  return { dir, other, script, trace: join(base, 'trace') };
}

describe('crash shim', () => {
  it('counts every mutation under the work folder, in order, and nothing outside it or read-only', async () => {
    const f = await folders('count');
    await writeFile(f.script, OPS_SCRIPT);
    const r = await runNode([f.script, f.dir, f.other], shimEnv(f.dir, { SPLITFIT_CRASH_TRACE: f.trace }), 60_000);
    expect(r.status, r.stderr).toBe(0);
    const trace = await readTrace(f.trace);
    expect(trace.map((c) => c.n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(trace.map((c) => `${c.op} ${c.path.slice(f.dir.length)}`)).toEqual([
      'mkdir /a',
      'open /a/x', // writeFileSync
      'write /a/x',
      'open /a/x', // openSync r+ (the readFileSync before it is not counted)
      'ftruncate /a/x',
      'fsync /a/x',
      'rename /a/y',
      'unlink /a/y',
      'rmdir /a',
    ]);
  });

  it('kills before the K-th call: calls 1…K-1 happened, K did not', async () => {
    const f = await folders('kill');
    await writeFile(f.script, OPS_SCRIPT);
    const r = await runNode([f.script, f.dir, f.other], shimEnv(f.dir, { SPLITFIT_CRASH_AT: '3' }), 60_000);
    expect(r.signal).toBe('SIGKILL');
    // Call 2 (open O_CREAT) ran, call 3 (write 'hello') did not.
    expect((await stat(join(f.dir, 'a', 'x'))).size).toBe(0);
    // The sibling folder ran its whole sequence first, uncounted.
    expect(await readdir(f.other)).toEqual([]);
  });

  it('numbers concurrent calls from libuv threads without gaps or repeats, and stops them all at K', async () => {
    const f = await folders('threads');
    await writeFile(f.script, THREADS_SCRIPT);
    const counted = await runNode([f.script, f.dir], shimEnv(f.dir, { SPLITFIT_CRASH_TRACE: f.trace }), 60_000);
    expect(counted.status, counted.stderr).toBe(0);
    const trace = await readTrace(f.trace);
    expect(trace.map((c) => c.n)).toEqual(Array.from({ length: 128 }, (_, i) => i + 1));
    expect(trace.filter((c) => c.op === 'open')).toHaveLength(64);
    expect(trace.filter((c) => c.op === 'write')).toHaveLength(64);

    await rm(f.dir, { recursive: true });
    await mkdir(f.dir);
    const killed = await runNode([f.script, f.dir], shimEnv(f.dir, { SPLITFIT_CRASH_AT: '50' }), 60_000);
    expect(killed.signal).toBe('SIGKILL');
    // At most calls 1…49 ran (a thread numbered below 50 may still be on its way to the call when
    // the kill lands): every created file is one open, every non-empty one also a write.
    const files = await readdir(f.dir);
    const written = (await Promise.all(files.map((n) => stat(join(f.dir, n))))).filter((s) => s.size > 0).length;
    expect(files.length + written).toBeLessThanOrEqual(49);
    expect(files.length + written).toBeGreaterThan(40);
    expect(written).toBeLessThanOrEqual(files.length);
  });
});

describe('crash-sweep folder checks', () => {
  const old = new Map([
    ['model.json', 'a1'],
    ['weights.bin', 'b1'],
  ]);
  const fresh = new Map([
    ['model.json', 'a2'],
    ['weights.bin', 'b2'],
  ]);

  it('accepts absent, old and new folders and names the origin of each file of a mixed one', () => {
    expect(classifyFolder(undefined, old, fresh)).toEqual({ state: 'absent', problems: [] });
    expect(classifyFolder(new Map(old), old, fresh).state).toBe('old');
    expect(classifyFolder(new Map(fresh), old, fresh).state).toBe('new');
    const mixed = classifyFolder(
      new Map([
        ['model.json', 'a1'],
        ['weights.bin', 'b2'],
        ['weights.bin.tmp-7', 'zz'],
      ]),
      old,
      fresh,
    );
    expect(mixed.state).toBe('mixed');
    expect(mixed.problems).toEqual(['--out is neither absent, the old folder nor the new one: model.json=old weights.bin=new weights.bin.tmp-7=other']);
  });

  it('counts differing feature entries per fingerprint, augmentation and generation, and names other keys', () => {
    const fp = 'ab'.repeat(32);
    expect(
      summarizeCacheDiff([`removed !f:${fp}!8a22c3fc6fdf!000001!s1!000000`, `removed !f:${fp}!8a22c3fc6fdf!000001!s2!000000`, `added !f:${fp}!8a22c3fc6fdf!000002!s1!000000`, 'changed !meta!run:current']),
    ).toEqual(['changed !meta!run:current', 'removed 2 entries f:abababab…/8a22c3fc6fdf/gen 1', 'added 1 entry f:abababab…/8a22c3fc6fdf/gen 2']);
  });

  it('lists point numbers as ranges', () => {
    expect(ranges([1, 2, 3, 7, 9, 10])).toBe('1-3,7,9-10');
    expect(ranges([])).toBe('');
  });

  it('drops timestamps and durations at any depth, nothing else', () => {
    expect(stripVolatile({ createdAt: 'x', seed: 1, history: { seconds: [1], loss: [2], generations: [{ waitedSeconds: 3, generation: 0 }] } })).toEqual({
      seed: 1,
      history: { loss: [2], generations: [{ generation: 0 }] },
    });
  });

  it('finds a shard whose size differs from what model.json declares', async () => {
    const dir = join(root, 'model');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'model.json'), JSON.stringify({ weightsManifest: [{ paths: ['weights.bin'], weights: [{ name: 'k', shape: [2, 3], dtype: 'float32' }] }] }));
    await writeFile(join(dir, 'weights.bin'), Buffer.alloc(24));
    expect(await checkModelFolder(dir, '')).toEqual([]);
    await writeFile(join(dir, 'weights.bin'), Buffer.alloc(12));
    expect(await checkModelFolder(dir, '')).toEqual(['model.json declares 24 weight bytes, its shards hold 12']);
  });
});

describe('crash sweep, a slice of the real CLI', () => {
  it('cache-features killed at points 44–46 (LevelDB appending the first feature batches to its log) reruns to a byte-identical, verified cache', async () => {
    const [report] = await runSweep({ commands: ['cache-features'], from: 44, to: 46, jobs: 1, root: join(root, 'sweep'), backend: process.env['SPLITFIT_TEST_BACKEND'] ?? 'tensorflow' });
    expect(report!.referenceProblems).toEqual([]);
    expect(report!.points).toBeGreaterThan(40);
    expect(report!.tried).toBe(3);
    expect(report!.consistent).toBe(3);
    expect(report!.notReached).toBe(0);
    // LevelDB's own writes are counted (classic-level writes its log and MANIFEST through stdio).
    expect(report!.failures).toEqual([]);
    expect(report!.ops['fwrite']).toBeGreaterThan(10);
    expect(report!.ops['fdatasync']).toBeGreaterThan(0);
    expect(report!.ops['rename']).toBeGreaterThan(0);
    // Set-up, reference and three points are a dozen CLI starts.
  }, 300_000);
});
