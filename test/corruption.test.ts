/**
 * Damaged cache entries, end to end through the CLI: a flipped byte, a truncated value and a header
 * with a wrong format version are detected on read (SPLITFIT_CACHE_CORRUPT naming the sample and the
 * fingerprint), `cache verify` lists each of them and exits 1, `cache verify --repair` deletes exactly
 * those, and rerunning cache-features (the command verify prints) re-extracts exactly those samples,
 * giving back the bytes of the undamaged cache.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headerByteLength } from '../src/cache/codec.js';
import { featuresSublevelName, shortFingerprint } from '../src/cache/keys.js';
import { backendArgs, CLI, runCli } from './helpers/cli.js';
import { compareRawFeatures, exists, makeToyFixture, readRawFeatures, type RawFeatures, sampleIdOf, splitfitStderr, stackLines, type ToyFixture } from './helpers/reliability.js';

let root: string;
let fx: ToyFixture;
let cache: string;
let fingerprint: string;
let reference: RawFeatures;
/** The three damaged entries: key → expected reason. */
const damaged = new Map<string, string>();

/** Rewrites one stored value with plain `level`, behind the cache's back (the cache is closed). */
async function tamper(key: string, edit: (value: Uint8Array) => Uint8Array): Promise<void> {
  const db = new Level<string, string>(cache);
  const sub = db.sublevel<string, Uint8Array>(featuresSublevelName(fingerprint), { valueEncoding: 'view' });
  await sub.put(key, edit(Uint8Array.from((await sub.get(key))!)));
  await db.close();
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-corruption-'));
  fx = await makeToyFixture(join(root, 'fx'), 10);
  cache = join(root, 'cache');
  const made = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', cache, '--json', ...backendArgs()]);
  expect(made.status, made.stderr).toBe(0);
  fingerprint = String(made.json['fingerprint']);
  reference = await readRawFeatures(cache);
  const keys = [...reference.get(fingerprint)!.keys()];
  expect(keys).toHaveLength(fx.total);
  const rank = 3; // features 16×16×8
  const [flip, cut, version] = [keys[3]!, keys[11]!, keys[25]!];
  await tamper(flip, (v) => {
    v[headerByteLength(rank) + 1000]! ^= 0x10;
    return v;
  });
  await tamper(cut, (v) => v.subarray(0, v.length - 100));
  await tamper(version, (v) => {
    new DataView(v.buffer, v.byteOffset).setUint16(4, 7, true);
    return v;
  });
  damaged.set(flip, 'crc mismatch').set(cut, 'truncated').set(version, 'wrong version');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('a damaged cache, through the CLI', () => {
  it('train-head stops with SPLITFIT_CACHE_CORRUPT naming the entry’s sample and fingerprint, and writes nothing', async () => {
    const out = join(root, 'out');
    const r = await runCli(['train-head', '--cache', cache, '--out', out, '--epochs', '1', '--json', ...backendArgs()]);
    expect(r.status).toBe(1);
    expect((r.json['error'] as { code: string }).code).toBe('SPLITFIT_CACHE_CORRUPT');
    const lines = splitfitStderr(r.stderr);
    expect(lines).toHaveLength(1);
    expect(stackLines(r.stderr)).toEqual([]);
    const message = lines[0]!;
    expect(message).toContain(shortFingerprint(fingerprint));
    expect([...damaged.keys()].some((k) => message.includes(sampleIdOf(k)))).toBe(true);
    expect(message).toMatch(new RegExp(`^splitfit: SPLITFIT_CACHE_CORRUPT: sample ${fx.data}/.+\\.png: `));
    expect(message).toContain('cache verify --repair');
    expect(await exists(out)).toBe(false);
  });

  it('cache verify lists every bad entry with its sample file and reason, and exits 1', async () => {
    const r = await runCli(['cache', 'verify', '--cache', cache, '--json']);
    expect(r.status).toBe(1);
    const corrupt = r.json['corrupt'] as { fingerprint: string; key: string; reason: string; sampleId: string; source: string }[];
    // Every map and its pooled vector (`<fingerprint>.gap`, written with it) is checked.
    expect(r.json).toMatchObject({ checked: 2 * fx.total, ok: false, repaired: 0 });
    expect(new Map(corrupt.map((c) => [c.key, c.reason]))).toEqual(damaged);
    for (const c of corrupt) {
      expect(c.fingerprint).toBe(fingerprint);
      expect(c.sampleId).toBe(sampleIdOf(c.key));
      expect(c.source).toMatch(new RegExp(`^${fx.data}/.+\\.png$`));
    }
    // The human listing names each damaged sample's file.
    const human = await runCli(['cache', 'verify', '--cache', cache]);
    expect(human.status).toBe(1);
    for (const c of corrupt) expect(human.stdout).toContain(c.source);
    expect(human.stdout).toContain('cache verify --repair');
  });

  it('cache verify --repair deletes exactly those entries and prints the command that re-extracts them', async () => {
    const r = await runCli(['cache', 'verify', '--repair', '--cache', cache, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ checked: 2 * fx.total, repaired: 3, ok: true });
    const rerun = r.json['rerun'] as { fingerprint: string; samples: number; command: string }[];
    expect(rerun).toEqual([{ fingerprint, samples: 3, command: expect.stringMatching(/^splitfit cache-features --model \S+ --boundary block2_add --data \S+ --cache \S+/) }]);
    const left = (await readRawFeatures(cache)).get(fingerprint)!;
    expect(left.size).toBe(fx.total - 3);
    for (const key of damaged.keys()) expect(left.has(key)).toBe(false);
    const after = await runCli(['cache', 'verify', '--cache', cache, '--json']);
    expect(after.status).toBe(0);
    expect(after.json).toEqual({ checked: 2 * fx.total - 3, corrupt: [], repaired: 0, ok: true });

    // The printed command, run as printed: it re-extracts exactly the deleted samples.
    const command = rerun[0]!.command.replace(/^splitfit /, `'${process.execPath}' '${CLI}' `);
    const stdout = execFileSync('sh', ['-c', `${command} --json ${backendArgs().join(' ')}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(result).toMatchObject({ fingerprint, total: fx.total, extracted: 3, skipped: fx.total - 3, entries: fx.total });
    expect(compareRawFeatures(reference, await readRawFeatures(cache))).toEqual([]);
    const final = await runCli(['cache', 'verify', '--cache', cache, '--json']);
    expect(final.json).toEqual({ checked: 2 * fx.total, corrupt: [], repaired: 0, ok: true });
  });
});
