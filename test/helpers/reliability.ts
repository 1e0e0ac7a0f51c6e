/**
 * Shared helpers of the reliability tests (crash trials, corruption, locking, disk full, bad input):
 * a small real fixture (Twemoji PNGs + a toy residual CNN saved to disk), raw snapshots of a cache,
 * and checks on what the CLI printed.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { makeEmojiDataset } from '../../examples/emoji-categories/dataset.js';
import { featuresSublevelName, HOLDER_FILE, parseFeatureKey } from '../../src/cache/keys.js';
import { saveModel } from '../../src/index.js';
import { randomizeBatchNorm, residualToyModel } from './models.js';

export interface ToyFixture {
  dir: string;
  /** `model.json` of the toy residual CNN (16×16×3 input, BN with non-trivial statistics). */
  model: string;
  /** A graph cut of the toy model: features 16×16×8. */
  boundary: string;
  /** Class folders of real Twemoji PNGs. */
  data: string;
  /** Class folders of other Twemoji PNGs of the same classes, when `testFraction` > 0. */
  validation?: string;
  total: number;
  classes: string[];
}

const TOY_CATEGORIES = ['Animals & Nature', 'Food & Drink', 'Travel & Places'];

/**
 * `classes` (at most 3) Twemoji categories × `perClass` PNGs and the toy model, written under `dir`;
 * with `testFraction` > 0 that share of each class goes to a separate `validation` folder instead.
 */
export async function makeToyFixture(dir: string, perClass = 40, testFraction = 0, classes = 3): Promise<ToyFixture> {
  await mkdir(dir, { recursive: true });
  const model = residualToyModel(1);
  randomizeBatchNorm(model);
  await saveModel(model, join(dir, 'toy'));
  model.dispose();
  const data = join(dir, 'emoji');
  const made = await makeEmojiDataset({ out: data, categories: TOY_CATEGORIES.slice(0, classes), perClass, testFraction });
  return {
    dir,
    model: join(dir, 'toy', 'model.json'),
    boundary: 'block2_add',
    data: join(data, 'train'),
    ...(made.test > 0 ? { validation: join(data, 'test') } : {}),
    total: made.train,
    classes: made.classes,
  };
}

/** Every stored feature value of a cache, raw (header + CRC + payload), by fingerprint then key. */
export type RawFeatures = Map<string, Map<string, Buffer>>;

/**
 * Reads the raw feature values of a (closed) cache with plain `level`, behind FeatureCache's back,
 * so a comparison covers the exact bytes on disk, headers and CRCs included.
 */
export async function readRawFeatures(cacheDir: string): Promise<RawFeatures> {
  const db = new Level<string, string>(cacheDir, { createIfMissing: false });
  await db.open();
  try {
    const meta = db.sublevel<string, unknown>('meta', { valueEncoding: 'json' });
    const fingerprints = ((await meta.get('fingerprints')) as string[] | undefined) ?? [];
    const out: RawFeatures = new Map();
    for (const fp of fingerprints) {
      const sub = db.sublevel<string, Uint8Array>(featuresSublevelName(fp), { valueEncoding: 'view' });
      const values = new Map<string, Buffer>();
      for await (const [key, value] of sub.iterator()) values.set(key, Buffer.from(value));
      out.set(fp, values);
    }
    return out;
  } finally {
    await db.close();
  }
}

/** Every key and value of a (closed) cache except the `holder` record, which each open rewrites. */
export async function snapshotCache(cacheDir: string): Promise<Map<string, string>> {
  const db = new Level<string, Uint8Array>(cacheDir, { createIfMissing: false, keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  try {
    const out = new Map<string, string>();
    for await (const [key, value] of db.iterator()) {
      if (key === '!meta!holder') continue;
      out.set(key, Buffer.from(value).toString('base64'));
    }
    return out;
  } finally {
    await db.close();
  }
}

/** Differences between two snapshots, as readable lines (empty when equal). */
export function diffSnapshots(before: Map<string, string>, after: Map<string, string>): string[] {
  const lines: string[] = [];
  for (const [k, v] of before) {
    if (!after.has(k)) lines.push(`removed ${k}`);
    else if (after.get(k) !== v) lines.push(`changed ${k}`);
  }
  for (const k of after.keys()) if (!before.has(k)) lines.push(`added ${k}`);
  return lines;
}

/** Compares the raw features of a cache with a reference: same keys, byte-identical values. */
export function compareRawFeatures(reference: RawFeatures, actual: RawFeatures): string[] {
  const problems: string[] = [];
  for (const [fp, ref] of reference) {
    const got = actual.get(fp);
    if (!got) {
      problems.push(`fingerprint ${fp.slice(0, 12)} missing`);
      continue;
    }
    for (const [key, value] of ref) {
      const other = got.get(key);
      if (!other) problems.push(`${fp.slice(0, 12)} ${key}: missing`);
      else if (!other.equals(value)) problems.push(`${fp.slice(0, 12)} ${key}: bytes differ`);
    }
    for (const key of got.keys()) if (!ref.has(key)) problems.push(`${fp.slice(0, 12)} ${key}: extra entry`);
  }
  for (const fp of actual.keys()) if (!reference.has(fp)) problems.push(`extra fingerprint ${fp.slice(0, 12)}`);
  return problems;
}

/** The sample id of a feature key (`aug!generation!sampleId!view`). */
export function sampleIdOf(key: string): string {
  const parts = parseFeatureKey(key);
  if (!parts) throw new Error(`not a feature key: ${key}`);
  return parts.sampleId;
}

/**
 * libtensorflow writes start-up lines to stderr before it reads TF_CPP_MIN_LOG_LEVEL (absl's
 * `WARNING: All log messages before absl::InitializeLog()…` and an `I0000 … port.cc:153] oneDNN …`
 * line). They are not splitfit's output; these tests look at everything else.
 */
export function splitfitStderr(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !/^WARNING: All log messages before absl::InitializeLog\(\)/.test(l))
    .filter((l) => !/^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.-]+:\d+\]/.test(l))
    .filter((l) => !/^To enable the following instructions:/.test(l));
}

/** Lines that look like a JavaScript stack trace. */
export function stackLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => /^\s+at\s/.test(l));
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export { HOLDER_FILE };
