/**
 * What the crash sweep compares: an output folder (file by file, timestamps removed) and a cache
 * (every raw LevelDB key and value, timestamps removed from JSON meta records), plus the checks a
 * folder must pass on its own (weight manifests match their shards, labels match the model).
 */
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { recoverFolder } from '../../src/output/commit.js';
import { diffSnapshots, exists, snapshotCache } from '../helpers/reliability.js';

/** Keys whose values change from run to run by design: wall-clock times and durations. */
const VOLATILE_KEY = /^(seconds|createdAt|startedAt|finishedAt|updatedAt)$|Seconds$/;

/** A JSON value with every volatile key removed, at any depth. */
export function stripVolatile(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripVolatile);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (!VOLATILE_KEY.test(k)) out[k] = stripVolatile(v);
    return out;
  }
  return value;
}

/** Files whose bytes hold timestamps; compared as JSON with `stripVolatile`. */
const TIMESTAMPED = new Set(['history.json', 'splitfit.json', 'report.json']);
const REPORT_DATA = /(<script type="application\/json" id="report-data">)(.*?)(<\/script>)/s;

/** The report shows times as text ("0.52 s", "0.08 s for 2", ISO dates): those change by design. */
function withoutClock(json: string): string {
  return json.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>').replace(/\d+(\.\d+)? s\b/g, '<s>');
}

/** The digest of a file, with what changes from run to run by design (times, durations) taken out. */
function digestOf(name: string, bytes: Buffer): string {
  const text = (): string => bytes.toString('utf8');
  try {
    if (TIMESTAMPED.has(name)) return sha(withoutClock(JSON.stringify(stripVolatile(JSON.parse(text())))));
    // The report embeds its data (with timings) as JSON; the page around it must be the same.
    if (name === 'report.html') {
      return sha(text().replace(REPORT_DATA, (_m, a: string, json: string, b: string) => a + withoutClock(JSON.stringify(stripVolatile(JSON.parse(json.replace(/\\u003c/g, '<'))))) + b));
    }
    // The commit record names each file with its hash: for the files above, the hash of volatile bytes.
    if (name === 'splitfit.commit.json') {
      const record = JSON.parse(text()) as { files: { path: string; bytes: number; sha256: string }[] };
      return sha(JSON.stringify(record.files.map((f) => (TIMESTAMPED.has(basename(f.path)) || basename(f.path) === 'report.html' ? { path: f.path } : f))));
    }
  } catch {
    return `unparsable:${sha(bytes)}`;
  }
  return sha(bytes);
}

/** A folder as relative path → digest (volatile parts normalized, see `digestOf`); undefined when absent. */
export type FolderSnapshot = Map<string, string> | undefined;

export async function snapshotFolder(dir: string): Promise<FolderSnapshot> {
  if (!(await exists(dir))) return undefined;
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) {
        out.set(`${relative(dir, full)}/`, 'dir');
        await walk(full);
        continue;
      }
      out.set(relative(dir, full), digestOf(entry.name, await readFile(full)));
    }
  };
  await walk(dir);
  return out;
}

/**
 * `--out` as every splitfit reader sees it: on a copy, an interrupted commit is finished (or an
 * unfinished staging folder dropped) exactly as `predict`, `evaluate` and the next train-head do.
 */
export async function snapshotAsReaderSees(dir: string): Promise<FolderSnapshot> {
  if (!(await exists(dir))) return undefined;
  const scratch = await mkdtemp(join(tmpdir(), 'splitfit-reader-'));
  try {
    const copy = join(scratch, 'out');
    await cp(dir, copy, { recursive: true });
    await recoverFolder(copy);
    return await snapshotFolder(copy);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

const sha = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex').slice(0, 16);

/**
 * Where each file of `actual` comes from: `old`, `new`, `both` (identical in the two), or `other`;
 * plus the files of the new folder that are missing. Empty `problems` means the folder is whole:
 * absent, exactly the old one, or exactly the new one.
 */
export function classifyFolder(actual: FolderSnapshot, old: FolderSnapshot, fresh: FolderSnapshot): { state: string; problems: string[] } {
  if (actual === undefined) return { state: 'absent', problems: [] };
  if (sameSnapshot(actual, old)) return { state: 'old', problems: [] };
  if (sameSnapshot(actual, fresh)) return { state: 'new', problems: [] };
  const origin: string[] = [];
  for (const [file, digest] of actual) {
    if (file.endsWith('/')) continue;
    const isOld = old?.get(file) === digest;
    const isNew = fresh?.get(file) === digest;
    origin.push(`${file}=${isOld && isNew ? 'both' : isOld ? 'old' : isNew ? 'new' : 'other'}`);
  }
  const missing = [...(fresh ?? new Map<string, string>()).keys()].filter((f) => !f.endsWith('/') && !actual.has(f));
  const text = `${origin.join(' ')}${missing.length ? ` missing:${missing.join(',')}` : ''}`;
  return { state: 'mixed', problems: [`--out is neither absent, the old folder nor the new one: ${text}`] };
}

function sameSnapshot(a: FolderSnapshot, b: FolderSnapshot): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** Differences between two folder snapshots, as readable lines (empty when equal). */
export function diffFolders(expected: FolderSnapshot, actual: FolderSnapshot): string[] {
  if (expected === undefined || actual === undefined) return expected === actual ? [] : [`folder ${expected ? 'missing' : 'present, expected absent'}`];
  return diffSnapshots(expected, actual).map((l) => l.replace(/^(removed|added|changed) /, (_m, w: string) => `${{ removed: 'missing', added: 'extra', changed: 'differs' }[w as 'removed']} `));
}

interface WeightsManifestGroup {
  paths: string[];
  weights: { name: string; shape: number[]; dtype: string; quantization?: { dtype: string } }[];
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, float16: 2, uint8: 1 };

/**
 * Checks one saved tfjs model folder on its own: the shards model.json names exist and their sizes
 * add up to what its weight specs declare. Returns problems (empty when whole).
 */
export async function checkModelFolder(dir: string, name: string): Promise<string[]> {
  const text = await readFile(join(dir, 'model.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return [`${name}model.json missing`];
  let json: { weightsManifest?: WeightsManifestGroup[] };
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    return [`${name}model.json is not JSON`];
  }
  let declared = 0;
  let actual = 0;
  const problems: string[] = [];
  for (const group of json.weightsManifest ?? []) {
    // A quantized weight occupies its quantized dtype's bytes (see src/model/quantize.ts).
    for (const w of group.weights) declared += w.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[w.quantization?.dtype ?? w.dtype] ?? 4);
    for (const p of group.paths) {
      const s = await stat(join(dir, p)).catch(() => undefined);
      if (!s) problems.push(`${name}${p} (named by model.json) missing`);
      else actual += s.size;
    }
  }
  if (problems.length === 0 && declared !== actual) problems.push(`${name}model.json declares ${declared} weight bytes, its shards hold ${actual}`);
  return problems;
}

/** A train-head output folder on its own: both models whole, and as many labels as output units. */
export async function checkOutFolder(dir: string): Promise<string[]> {
  if (!(await exists(dir))) return [];
  const problems = [...(await checkModelFolder(dir, '')), ...(await checkModelFolder(join(dir, 'head'), 'head/'))];
  const meta = await readFile(join(dir, 'splitfit.json'), 'utf8').then((t) => JSON.parse(t) as { labels?: string[] }).catch(() => undefined);
  const model = await readFile(join(dir, 'model.json'), 'utf8').catch(() => undefined);
  const units = model === undefined ? undefined : [...model.matchAll(/"units":\s*(\d+)/g)].at(-1)?.[1];
  if (meta?.labels && units !== undefined && Number(units) !== meta.labels.length) problems.push(`splitfit.json has ${meta.labels.length} labels, model.json's output has ${units} units`);
  return problems;
}

/** A cache as raw key → value (base64), JSON meta records with timestamps removed; the holder record is left out. */
export async function snapshotCacheNormalized(cacheDir: string): Promise<Map<string, string> | undefined> {
  if (!(await exists(join(cacheDir, 'CURRENT')))) return undefined;
  const raw = await snapshotCache(cacheDir);
  for (const [k, v] of raw) {
    if (!k.startsWith('!meta!')) continue;
    try {
      raw.set(k, JSON.stringify(stripVolatile(JSON.parse(Buffer.from(v, 'base64').toString('utf8')))));
    } catch {
      // not JSON: compared raw
    }
  }
  return raw;
}

/**
 * The cache's current run record (`run:current`), read from a copy so that LevelDB's recovery on
 * open does not change the killed state the rerun must start from. Undefined when there is none.
 */
export async function currentRunOf(cacheDir: string): Promise<{ data?: string; fingerprint?: string } | undefined> {
  if (!(await exists(join(cacheDir, 'CURRENT')))) return undefined;
  const copy = await mkdtemp(join(tmpdir(), 'splitfit-crash-peek-'));
  try {
    await cp(cacheDir, copy, { recursive: true });
    const raw = await snapshotCache(copy);
    const read = (key: string): Record<string, unknown> | undefined => {
      const value = raw.get(`!meta!${key}`);
      return value === undefined ? undefined : (JSON.parse(Buffer.from(value, 'base64').toString('utf8')) as Record<string, unknown>);
    };
    // `run:current` is a pointer {runId} to the record `run:<runId>` (older caches held the record itself).
    const current = read('run:current');
    const record = typeof current?.['runId'] === 'string' && current['data'] === undefined ? read(`run:${current['runId']}`) : current;
    return record as { data?: string; fingerprint?: string } | undefined;
  } finally {
    await rm(copy, { recursive: true, force: true });
  }
}

/**
 * Cache differences (`removed|added|changed <key>` lines) in few words: feature entries are counted
 * per fingerprint, augmentation and generation ("removed 16 entries f:52f9905e…/8a22c3fc6fdf/gen 1"),
 * other keys are named.
 */
export function summarizeCacheDiff(lines: string[]): string[] {
  const groups = new Map<string, number>();
  const named: string[] = [];
  for (const line of lines) {
    const m = /^(removed|added|changed) !f:([0-9A-Za-z_.-]+)!([^!]+)!(\d+)!/.exec(line);
    if (!m) {
      named.push(line);
      continue;
    }
    const key = `${m[1]} @ f:${m[2]!.slice(0, 8)}…/${m[3]}/gen ${Number(m[4])}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return [...named, ...[...groups].map(([k, n]) => k.replace(' @ ', ` ${n} entr${n === 1 ? 'y' : 'ies'} `))];
}
