/**
 * Hostile data sources (issue #11): special files, link loops, path traversal in manifests, absurd
 * sizes, wrong-type JSON rows, stray IDX labels, duplicates and label conflicts, caches inside the data.
 * The table runs against the library (every row: the coded error, and the message naming the culprit);
 * the last block runs the real CLI on the families that used to hang or give a wrong result with exit 0.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, realpath, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DataSource, decodeImage, type ErrorCode, FeatureCache, openDataSource, openFiles, selectSamples } from '../src/index.js';
import type { OpenDataSourceOptions } from '../src/data/sources.js';
import { readIdx } from '../src/data/idx.js';
import { idx, makeTempDir, sha256, solid, writeAt } from './data-fixtures.js';
import { backendArgs, type CliResult, runCli } from './helpers/cli.js';
import { diffSnapshots, exists, makeToyFixture, snapshotCache, splitfitStderr, stackLines, type ToyFixture } from './helpers/reliability.js';

let dir: string;
let cleanup: () => Promise<void>;
let seed = 1;

beforeAll(async () => {
  ({ dir, cleanup } = await makeTempDir('hostile'));
});
afterAll(() => cleanup());

/** A class-folder tree of distinct 8×8 PNGs under `dir/name`; returns the root. */
async function classFolders(name: string, layout: Record<string, number>): Promise<string> {
  const root = join(dir, name);
  for (const [label, count] of Object.entries(layout)) {
    for (let i = 0; i < count; i++) await writeAt(join(root, label, `img-${i}.png`), await solid([10, 20, 30], 'png', 8, seed++));
  }
  return root;
}

function mkfifo(path: string): string {
  execFileSync('mkfifo', [path]);
  return path;
}

function countBy(source: DataSource): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of source.samples) counts[s.label ?? '?'] = (counts[s.label ?? '?'] ?? 0) + 1;
  return counts;
}

/** Gzip members of zeros, concatenated (a valid multi-member gzip): `members` × 16 MiB inflated, ~16 KiB each compressed. */
function gzipBomb(header: Buffer, members: number): Buffer {
  const zeros = gzipSync(Buffer.alloc(16 << 20));
  return Buffer.concat([gzipSync(header), ...Array.from({ length: members }, () => zeros)]);
}

interface Row {
  name: string;
  /** Builds the hostile input under `base` (a fresh folder) and returns the data spec. */
  spec: (base: string) => Promise<string>;
  options?: OpenDataSourceOptions;
  /**
   * `open`: opening the source fails. `load`: it opens, and exactly one sample's `load()` fails — a bad
   * sample, which `--skip-bad` counts as failed like an undecodable image.
   * @default 'open'
   */
  at?: 'open' | 'load';
  code: ErrorCode;
  /** Texts the message must contain: the culprit (file, row) and what it is. */
  mentions: (base: string) => string[];
}

const csv = async (base: string, text: string, files: Record<string, Buffer> = {}): Promise<string> => {
  for (const [rel, bytes] of Object.entries(files)) await writeAt(join(base, rel), bytes);
  return writeAt(join(base, 'labels.csv'), text);
};
const jsonl = async (base: string, lines: string[]): Promise<string> => {
  await writeAt(join(base, 'a.png'), await solid([1, 2, 3], 'png', 8, seed++));
  return writeAt(join(base, 'rows.jsonl'), `${lines.join('\n')}\n`);
};
const png = (): Promise<Buffer> => solid([4, 5, 6], 'png', 8, seed++);

const rows: Row[] = [
  // special files: never opened blocking, never read
  {
    name: 'a FIFO named like an image in a class folder',
    spec: async (b) => {
      await classFolders(b.slice(dir.length + 1), { a: 1, b: 1 });
      mkfifo(join(b, 'a', 'pipe.png'));
      return b;
    },
    at: 'load',
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'a', 'pipe.png'), 'a FIFO (named pipe), not a regular file'],
  },
  {
    name: 'a link to /dev/zero in a class folder',
    spec: async (b) => {
      await classFolders(b.slice(dir.length + 1), { a: 1, b: 1 });
      await symlink('/dev/zero', join(b, 'b', 'zero.png'));
      return b;
    },
    at: 'load',
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'b', 'zero.png'), 'a character device'],
  },
  {
    name: 'a link to /dev/urandom in a class folder',
    spec: async (b) => {
      await classFolders(b.slice(dir.length + 1), { a: 1, b: 1 });
      await symlink('/dev/urandom', join(b, 'a', 'noise.jpg'));
      return b;
    },
    at: 'load',
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'a', 'noise.jpg'), 'a character device'],
  },
  {
    name: 'a manifest row naming /dev/zero',
    spec: async (b) => csv(b, 'path,label\na.png,x\n/dev/zero,y\n', { 'a.png': await png() }),
    at: 'load',
    code: 'SPLITFIT_DATA_DECODE',
    mentions: () => ['/dev/zero', 'labels.csv line 3', 'a character device'],
  },
  {
    name: 'a manifest row naming a FIFO',
    spec: async (b) => {
      const file = await csv(b, 'path,label\na.png,x\npipe,y\n', { 'a.png': await png() });
      mkfifo(join(b, 'pipe'));
      return file;
    },
    at: 'load',
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'pipe'), 'labels.csv line 3', 'FIFO'],
  },
  {
    name: 'a manifest row naming a folder',
    spec: async (b) => {
      await mkdir(join(b, 'sub'), { recursive: true });
      return csv(b, 'path,label\na.png,x\nsub,y\n', { 'a.png': await png() });
    },
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'sub'), 'labels.csv line 3', 'directory'],
  },
  {
    name: 'a manifest that is a FIFO',
    spec: async (b) => {
      await mkdir(b, { recursive: true });
      return mkfifo(join(b, 'labels.csv'));
    },
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'labels.csv'), 'FIFO'],
  },
  { name: 'the data spec /dev/zero', spec: async () => '/dev/zero', code: 'SPLITFIT_DATA_DECODE', mentions: () => ['/dev/zero', 'a character device'] },
  {
    name: 'an IDX images file that is a link to /dev/urandom',
    spec: async (b) => {
      await mkdir(b, { recursive: true });
      await symlink('/dev/urandom', join(b, 'x-images-idx3-ubyte'));
      return join(b, 'x-images-idx3-ubyte');
    },
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'x-images-idx3-ubyte'), 'a character device'],
  },
  {
    name: 'an "images:labels" spec whose labels file is /dev/zero',
    spec: async (b) => `${await writeAt(join(b, 'p-images-idx3-ubyte'), idx([1, 2, 2], new Uint8Array(4)))}:/dev/zero`,
    code: 'SPLITFIT_DATA_DECODE',
    mentions: () => ['IDX labels file /dev/zero is not a regular file'],
  },
  // link loops and second paths
  {
    name: 'a class folder that is a link to another class',
    spec: async (b) => {
      await classFolders(b.slice(dir.length + 1), { cats: 2 });
      await symlink('cats', join(b, 'kittens'));
      return b;
    },
    code: 'SPLITFIT_DATA_CONFLICT',
    mentions: (b) => [join(b, 'kittens'), join(b, 'cats'), "class 'cats'", "class 'kittens'", 'one class only'],
  },
  {
    name: 'a link inside one class to another class folder',
    spec: async (b) => {
      await classFolders(b.slice(dir.length + 1), { cats: 2, dogs: 2 });
      await symlink('../dogs', join(b, 'cats', 'more'));
      return b;
    },
    code: 'SPLITFIT_DATA_CONFLICT',
    mentions: (b) => [join(b, 'cats', 'more'), join(b, 'dogs'), 'same folder'],
  },
  // duplicates under two labels
  {
    name: 'the same bytes in two class folders',
    spec: async (b) => {
      const bytes = await png();
      await writeAt(join(b, 'cat', 'x.png'), bytes);
      await writeAt(join(b, 'dog', 'y.png'), bytes);
      return b;
    },
    code: 'SPLITFIT_DATA_CONFLICT',
    mentions: (b) => [join(b, 'cat', 'x.png'), join(b, 'dog', 'y.png'), "'cat'", "'dog'", 'identical bytes'],
  },
  {
    name: 'the same file listed twice in a manifest with two labels',
    spec: async (b) => csv(b, 'path,label\na.png,smile\nb.png,frown\n./a.png,frown\n', { 'a.png': await png(), 'b.png': await png() }),
    code: 'SPLITFIT_DATA_CONFLICT',
    mentions: (b) => [join(b, 'a.png'), "'smile'", "'frown'"],
  },
  {
    name: 'two identical IDX images with different labels',
    spec: async (b) => {
      const images = Buffer.alloc(3 * 4);
      images.fill(9, 0, 4);
      images.fill(9, 8, 12);
      await writeAt(join(b, 'd-labels-idx1-ubyte'), idx([3], new Uint8Array([0, 1, 1])));
      return writeAt(join(b, 'd-images-idx3-ubyte'), idx([3, 2, 2], images));
    },
    code: 'SPLITFIT_DATA_CONFLICT',
    mentions: (b) => [`${join(b, 'd-images-idx3-ubyte')}#0`, `${join(b, 'd-images-idx3-ubyte')}#2`],
  },
  // wrong-type JSON rows
  ...(
    [
      ['a null label', '{"path":"a.png","label":null}', 'got null'],
      ['an array label', '{"path":"a.png","label":["cat"]}', 'got an array ["cat"]'],
      ['an object label', '{"path":"a.png","label":{"name":"cat"}}', 'got an object {"name":"cat"}'],
      ['a boolean label', '{"path":"a.png","label":true}', 'got the boolean true'],
      ['a fractional label', '{"path":"a.png","label":1.5}', 'got the number 1.5'],
      ['a label too large to be a class number', '{"path":"a.png","label":1e300}', 'got the number 1e+300'],
      ['a missing label', '{"path":"a.png"}', 'got nothing (no such key)'],
      ['a blank label', '{"path":"a.png","label":"   "}', 'empty label'],
      ['a numeric path', '{"path":3,"label":"cat"}', '"path" must be a string, got the number 3'],
      ['a row that is an array', '["a.png","cat"]', 'expected an object'],
      ['a row that is null', 'null', 'expected an object'],
    ] as const
  ).map(([what, line, says]): Row => ({
    name: `JSONL: ${what}`,
    spec: (b) => jsonl(b, ['{"path":"a.png","label":"ok"}', line]),
    code: 'SPLITFIT_DATA_DECODE',
    mentions: () => ['rows.jsonl line 2', says],
  })),
  // absurd sizes
  {
    name: 'IDX dimensions declaring more bytes than a Buffer holds',
    spec: async (b) => writeAt(join(b, 'huge-images-idx3-ubyte'), idx([0xffffffff, 0xffffffff, 28], new Uint8Array(16))),
    options: { labels: 'none' },
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'huge-images-idx3-ubyte'), '[4294967295, 4294967295, 28]', 'more than the 4294967296'],
  },
  {
    name: 'a gzip IDX whose data inflates far past its header (256 MiB of zeros behind a 1×2×2 header)',
    spec: async (b) => writeAt(join(b, 'bomb-images-idx3-ubyte.gz'), gzipBomb(idx([1, 2, 2], new Uint8Array(4)), 16)),
    options: { labels: 'none' },
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 'bomb-images-idx3-ubyte.gz'), 'inflates to more than the 20 bytes its header declares'],
  },
  {
    name: 'a gzip IDX header declaring an absurd size',
    spec: async (b) => writeAt(join(b, 'claim-images-idx3-ubyte.gz'), idx([0xffffffff, 0xffffffff, 0xffffffff], new Uint8Array(8), true)),
    options: { labels: 'none' },
    code: 'SPLITFIT_DATA_DECODE',
    mentions: () => ['more than the 4294967296 splitfit can hold'],
  },
  // stray IDX labels
  {
    name: 'one stray label byte (200) in a 0/1 labels file',
    spec: async (b) => {
      const labels = new Uint8Array(40).map((_, i) => i % 2);
      labels[17] = 200;
      await writeAt(join(b, 's-labels-idx1-ubyte'), idx([40], labels));
      return writeAt(join(b, 's-images-idx3-ubyte'), idx([40, 2, 2], new Uint8Array(160).map((_, i) => i)));
    },
    code: 'SPLITFIT_DATA_DECODE',
    mentions: (b) => [join(b, 's-labels-idx1-ubyte'), 'never 2..199', '198 of 201 classes', '200 at row 17', 'classNames'],
  },
];

describe('hostile data sources: coded error naming the culprit, never a hang', () => {
  it.each(rows.map((r, i) => [r.name, r, i] as const))('%s', { timeout: 20_000 }, async (_name, row, i) => {
    const base = join(dir, `row-${i}`);
    const spec = await row.spec(base);
    let err: unknown;
    if (row.at === 'load') {
      const source = await openDataSource(spec, row.options);
      const loads = await Promise.allSettled(source.samples.map((s) => s.load()));
      const failed = loads.filter((l): l is PromiseRejectedResult => l.status === 'rejected');
      expect(failed, 'exactly one sample should fail to load').toHaveLength(1);
      err = failed[0]!.reason;
    } else {
      err = await openDataSource(spec, row.options).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, 'opening the source should have failed').toBeDefined();
    }
    expect(err).toMatchObject({ name: 'SplitfitError', code: row.code });
    for (const m of row.mentions(base)) expect((err as Error).message).toContain(m);
  });

  it('openFiles (predict) lists a FIFO and /dev/zero without reading them; their load() fails by name', { timeout: 20_000 }, async () => {
    const fifo = mkfifo(join(dir, 'lonely.png'));
    const source = await openFiles([fifo, '/dev/zero']);
    expect(source.samples.map((s) => s.source)).toEqual([fifo, '/dev/zero']);
    // Ids from the path: distinct, stable, and not the hash of empty content.
    expect(new Set(source.samples.map((s) => s.id)).size).toBe(2);
    expect(source.samples.map((s) => s.id)).not.toContain(sha256(''));
    expect((await openFiles([fifo])).samples[0]!.id).toBe(source.samples[0]!.id);
    await expect(source.samples[0]!.load()).rejects.toMatchObject({ code: 'SPLITFIT_DATA_DECODE', message: expect.stringContaining(`${fifo}: is a FIFO`) });
    await expect(source.samples[1]!.load()).rejects.toMatchObject({ code: 'SPLITFIT_DATA_DECODE', message: expect.stringContaining('/dev/zero: is a character device') });
  });

  it('a file swapped for a FIFO after listing fails its load() by name instead of hanging', { timeout: 20_000 }, async () => {
    const root = await classFolders('swapped', { a: 1, b: 1 });
    const source = await openDataSource(root);
    const victim = source.samples[0]!.source;
    execFileSync('rm', [victim]);
    mkfifo(victim);
    await expect(source.samples[0]!.load()).rejects.toMatchObject({ code: 'SPLITFIT_DATA_DECODE', message: expect.stringContaining('FIFO') });
  });

  it('the gzip bomb is refused after inflating at most 1 MiB, not its 256 MiB', async () => {
    const file = await writeAt(join(dir, 'bomb2', 'b-images-idx3-ubyte.gz'), gzipBomb(idx([1, 2, 2], new Uint8Array(4)), 16));
    const err = (await readIdx(file).catch((e: unknown) => e)) as Error;
    const stoppedAfter = Number(/stopped after (\d+)\)/.exec(err.message)?.[1]);
    expect(stoppedAfter).toBeGreaterThan(20);
    expect(stoppedAfter).toBeLessThanOrEqual(1 << 20);
  });

  it('a PNG declaring 100000×100000 pixels is SPLITFIT_DATA_DECODE at decode time, never allocated', async () => {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(100_000, 0);
    ihdr.writeUInt32BE(100_000, 4);
    ihdr[8] = 8;
    ihdr[9] = 2; // 8-bit RGB: 30 GB decoded
    const chunk = (type: string, data: Buffer): Buffer => {
      const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
      const out = Buffer.alloc(12 + data.length);
      out.writeUInt32BE(data.length, 0);
      body.copy(out, 4);
      out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
      return out;
    };
    const bytes = Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1000))), chunk('IEND', Buffer.alloc(0))]);
    const root = join(dir, 'huge-png');
    await writeAt(join(root, 'a', 'huge.png'), bytes);
    await writeAt(join(root, 'b', 'ok.png'), await png());
    const sample = (await openDataSource(root)).samples.find((s) => s.source.endsWith('huge.png'))!;
    await expect(decodeImage(await sample.load(), { height: 16, width: 16, channels: 3 }, sample.source)).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringMatching(new RegExp(`${sample.source}.*exceeds pixel limit.*--skip-bad`)),
    });
  });

  it('an honest gzip IDX still reads whole (the bound is the header size, not a guess)', async () => {
    const pixels = new Uint8Array(5 * 28 * 28).map((_, i) => (i * 7) % 256);
    const file = await writeAt(join(dir, 'honest', 'h-images-idx3-ubyte.gz'), idx([5, 28, 28], pixels, true));
    const read = await readIdx(file);
    expect(read.dims).toEqual([5, 28, 28]);
    expect(Buffer.from(read.data).equals(Buffer.from(pixels))).toBe(true);
  });
});

describe('link loops and second paths are listed once, by real path', () => {
  it('a loop back to the data root (cats/up -> ..) adds nothing and relabels nothing; a note names it', async () => {
    const root = await classFolders('loop', { cats: 4, dogs: 3 });
    await symlink('..', join(root, 'cats', 'up'));
    await symlink('.', join(root, 'dogs', 'here'));
    const source = await openDataSource(root);
    expect(source.labels).toEqual(['cats', 'dogs']);
    expect(countBy(source)).toEqual({ cats: 4, dogs: 3 });
    expect(source.samples.every((s) => s.source.startsWith(join(root, s.label!) + '/') && !s.source.includes('/up/'))).toBe(true);
    expect(source.notes).toHaveLength(2);
    expect(source.notes![0]).toContain(`skipped ${join(root, 'cats', 'up')}: a link loop`);
    expect(source.notes![1]).toContain(`skipped ${join(root, 'dogs', 'here')}: a link loop`);
  });

  it('a link to / (which holds the data set) is a loop, not a walk of the whole disk', async () => {
    const root = await classFolders('to-slash', { a: 1, b: 1 });
    await symlink('/', join(root, 'a', 'everything'));
    const source = await openDataSource(root);
    expect(countBy(source)).toEqual({ a: 1, b: 1 });
    expect(source.notes).toEqual([expect.stringContaining(`skipped ${join(root, 'a', 'everything')}: a link loop`)]);
  });

  it("labels: 'none' lists a looped tree once", async () => {
    const root = await classFolders('loop-none', { x: 2, y: 2 });
    await symlink('..', join(root, 'x', 'up'));
    const source = await openDataSource(root, { labels: 'none' });
    expect(source.samples).toHaveLength(4);
    expect(source.notes).toEqual([expect.stringContaining('a link loop')]);
  });

  it('a second path to a folder inside the same class is listed once, with a note', async () => {
    const root = await classFolders('second-path', { a: 1, b: 1 });
    await writeAt(join(root, 'a', 'trip', 'p.png'), await png());
    await symlink('trip', join(root, 'a', 'trip-again'));
    const source = await openDataSource(root);
    expect(countBy(source)).toEqual({ a: 2, b: 1 });
    expect(source.notes).toEqual([`skipped ${join(root, 'a', 'trip-again')}: a second path to ${join(root, 'a', 'trip')} (${await realpath(join(root, 'a', 'trip'))}), listed once`]);
  });

  it('a class folder linked onto another disk is still followed', async () => {
    const elsewhere = await classFolders('big-disk', { birds: 3 });
    const root = await classFolders('linked-class', { fish: 2 });
    await symlink(join(elsewhere, 'birds'), join(root, 'birds'));
    const source = await openDataSource(root);
    expect(countBy(source)).toEqual({ birds: 3, fish: 2 });
    expect(source.notes).toEqual([]);
  });
});

describe('folders that are not data are skipped, said once', () => {
  it('a feature cache and a splitfit output folder inside the data are not classes; one note names both', async () => {
    const root = await classFolders('with-cache', { a: 2, b: 2 });
    await (await FeatureCache.open(join(root, 'cache'))).close();
    expect((await readdir(join(root, 'cache'))).filter((n) => ['CURRENT', 'LOCK'].includes(n) || n.startsWith('MANIFEST-'))).toHaveLength(3);
    await writeAt(join(root, 'model', 'splitfit.json'), '{}');
    await writeAt(join(root, 'model', 'preview.png'), await png());
    // Inside a class folder too (a cache made by `--cache photos/a/cache`).
    await (await FeatureCache.open(join(root, 'a', 'cache'))).close();
    const source = await openDataSource(root);
    expect(source.labels).toEqual(['a', 'b']);
    expect(countBy(source)).toEqual({ a: 2, b: 2 });
    expect(source.notes).toEqual([
      `skipped 3 folder(s) that are not data: ${join(root, 'a', 'cache')} (a LevelDB feature cache), ` +
        `${join(root, 'cache')} (a LevelDB feature cache), ${join(root, 'model')} (a splitfit output folder)`,
    ]);
  });

  it("labels: 'none' skips them too; a folder that only looks half like a cache is data", async () => {
    const root = await classFolders('with-cache-none', { a: 1 });
    await (await FeatureCache.open(join(root, 'cache'))).close();
    await writeAt(join(root, 'CURRENT-ish', 'CURRENT'), 'not a cache');
    await writeAt(join(root, 'CURRENT-ish', 'q.png'), await png());
    const source = await openDataSource(root, { labels: 'none' });
    expect(source.samples.map((s) => s.source)).toEqual([join(root, 'CURRENT-ish', 'q.png'), join(root, 'a', 'img-0.png')]);
    expect(source.notes).toEqual([`skipped 1 folder(s) that are not data: ${join(root, 'cache')} (a LevelDB feature cache)`]);
  });
});

describe('duplicates are reported, not skipped', () => {
  it('the same bytes twice in one class: one sample, the copy in duplicates; selectSamples keeps the report', async () => {
    const root = await classFolders('dupes', { a: 2, b: 1 });
    const bytes = await png();
    await writeAt(join(root, 'a', 'x.png'), bytes);
    await writeAt(join(root, 'a', 'y.png'), bytes);
    const source = await openDataSource(root);
    expect(countBy(source)).toEqual({ a: 3, b: 1 });
    expect(new Set(source.samples.map((s) => s.id)).size).toBe(source.samples.length);
    expect(source.duplicates!.map((d) => [d.source, d.duplicateOf, d.id, d.label])).toEqual([
      [join(root, 'a', 'y.png'), join(root, 'a', 'x.png'), sha256(bytes), 'a'],
    ]);
    expect(await source.duplicates![0]!.load()).toEqual(bytes);
    expect(selectSamples(source, { classes: ['a'] }).duplicates).toHaveLength(1);
    expect(selectSamples(source, { classes: ['b'] }).duplicates).toEqual([]);
  });

  it('openFiles keeps one sample per path given, duplicates included (predict answers per file)', async () => {
    const bytes = await png();
    const a = await writeAt(join(dir, 'files', 'a.png'), bytes);
    const b = await writeAt(join(dir, 'files', 'b.png'), bytes);
    const source = await openFiles([a, b]);
    expect(source.samples.map((s) => s.source)).toEqual([a, b]);
    expect(source.duplicates).toEqual([]);
  });
});

describe('manifest labels and paths: one rule for CSV and JSONL', () => {
  it('labels are trimmed in both: "smile" and "smile " are one class', async () => {
    const base = join(dir, 'trim');
    await writeAt(join(base, 'a.png'), await png());
    await writeAt(join(base, 'b.png'), await png());
    await writeAt(join(base, 'c.png'), await png());
    const fromJsonl = await openDataSource(
      await writeAt(join(base, 'm.jsonl'), '{"path":"a.png","label":"smile"}\n{"path":" b.png ","label":"smile "}\n{"path":"c.png","label":"\\tfrown"}\n'),
    );
    const fromCsv = await openDataSource(await writeAt(join(base, 'm.csv'), 'path,label\na.png,smile\n b.png ,smile \nc.png,\tfrown\n'));
    expect(fromJsonl.labels).toEqual(['frown', 'smile']);
    expect(fromCsv.labels).toEqual(fromJsonl.labels);
    expect(fromCsv.samples.map((s) => [s.source, s.label])).toEqual(fromJsonl.samples.map((s) => [s.source, s.label]));
    expect(fromJsonl.samples.map((s) => s.source)).toEqual([join(base, 'a.png'), join(base, 'b.png'), join(base, 'c.png')]);
  });

  it('an integer JSONL label stays a class name; with labels: none a label of any type is ignored', async () => {
    const base = join(dir, 'int-label');
    const file = await jsonl(base, ['{"path":"a.png","label":3}']);
    expect((await openDataSource(file)).labels).toEqual(['3']);
    const loose = await jsonl(join(dir, 'any-label'), ['{"path":"a.png","label":[1,2]}']);
    expect((await openDataSource(loose, { labels: 'none' })).samples).toHaveLength(1);
  });

  it('manifest paths resolve relative to the manifest and may leave its folder (`..`, absolute): the user\'s own list', async () => {
    const outside = await writeAt(join(dir, 'outside', 'o.png'), await png());
    const base = join(dir, 'traversal', 'deep');
    await writeAt(join(base, 'in.png'), await png());
    const file = await writeAt(join(base, 'labels.csv'), `path,label\nin.png,a\n../../outside/o.png,b\n${'../'.repeat(20)}etc/passwd,c\n`);
    const source = await openDataSource(file);
    expect(source.samples.map((s) => [s.source, s.label])).toEqual([
      [join(base, 'in.png'), 'a'],
      [outside, 'b'],
      ['/etc/passwd', 'c'],
    ]);
  });
});

describe('IDX labels: every class has samples, or it was named on purpose', () => {
  const images = idx([6, 2, 2], new Uint8Array(24).map((_, i) => i));
  it('with classNames, a class with no samples is allowed and reported in notes', async () => {
    const base = join(dir, 'idx-named');
    await writeAt(join(base, 'n-labels-idx1-ubyte'), idx([6], new Uint8Array([0, 2, 0, 2, 0, 2])));
    const file = await writeAt(join(base, 'n-images-idx3-ubyte'), images);
    const source = await openDataSource(file, { classNames: ['cat', 'dog', 'eel', 'fox'] });
    expect(source.labels).toEqual(['cat', 'dog', 'eel', 'fox']);
    expect(source.notes).toEqual([`2 of 4 classes have no samples in ${join(base, 'n-labels-idx1-ubyte')}: 'dog' (1), 'fox' (3)`]);
    // Without classNames the same file is refused: classes 0..2 with 1 empty.
    await expect(openDataSource(file)).rejects.toMatchObject({ code: 'SPLITFIT_DATA_DECODE', message: expect.stringContaining('never 1,') });
  });
});

// ---------------------------------------------------------------------------------------------
// Through the real CLI: the families that hung or exited 0 with a wrong result.

/** The built CLI with `--json` and a kill timer, so a hang fails the test instead of stalling the suite. */
const runCliWithin = (args: string[], ms = 60_000): Promise<CliResult> => runCli([...args, '--json', ...backendArgs()], { timeoutMs: ms });

describe('through the CLI', () => {
  let fx: ToyFixture;
  let cliDir: string;
  beforeAll(async () => {
    cliDir = join(dir, 'cli');
    fx = await makeToyFixture(join(cliDir, 'fx'), 2);
  });
  const cf = (data: string, cache: string): string[] => ['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', data, '--cache', cache];

  function expectCoded(r: Awaited<ReturnType<typeof runCliWithin>>, code: ErrorCode, mentions: string[]): void {
    expect(r.signal, 'the CLI hung and was killed').toBeNull();
    expect(r.status, r.stderr).toBe(1);
    expect(r.json).toEqual({ error: { code, message: expect.any(String) } });
    const lines = splitfitStderr(r.stderr);
    expect(lines, r.stderr).toHaveLength(1);
    expect(stackLines(r.stderr)).toEqual([]);
    for (const m of mentions) expect(lines[0]).toContain(m);
  }

  it('cache-features on a class folder holding a FIFO: SPLITFIT_DATA_DECODE naming it, no hang; --skip-bad counts it as failed', async () => {
    const data = join(cliDir, 'fifo-data');
    await mkdir(data);
    execFileSync('cp', ['-r', ...fx.classes.map((c) => join(fx.data, c)), data]);
    const fifo = mkfifo(join(data, fx.classes[0]!, 'pipe.png'));
    const cache = join(cliDir, 'fifo-cache');
    expectCoded(await runCliWithin(cf(data, cache)), 'SPLITFIT_DATA_DECODE', [fifo, 'FIFO', '--skip-bad']);
    // With --skip-bad it is a failed sample like an undecodable image; the rest is cached.
    const r = await runCliWithin([...cf(data, cache), '--skip-bad']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ total: fx.total + 1, failed: 1, entries: fx.total, failures: [{ source: fifo, reason: expect.stringContaining('FIFO') }] });
  });

  it('predict on /dev/zero and on a FIFO: SPLITFIT_DATA_DECODE naming the file, no hang', async () => {
    expectCoded(await runCliWithin(['predict', '--model', fx.model, '/dev/zero']), 'SPLITFIT_DATA_DECODE', ['/dev/zero', 'character device']);
    const fifo = mkfifo(join(cliDir, 'in.png'));
    expectCoded(await runCliWithin(['predict', '--model', fx.model, fifo]), 'SPLITFIT_DATA_DECODE', [fifo, 'FIFO']);
  });

  it('a symlink loop and the cache inside the data folder: counted once, run after run, with notes', async () => {
    const data = join(cliDir, 'loop-data');
    await mkdir(data);
    execFileSync('cp', ['-r', ...fx.classes.map((c) => join(fx.data, c)), data]);
    await symlink('..', join(data, fx.classes[0]!, 'up'));
    const cache = join(data, 'cache');
    const first = await runCliWithin(cf(data, cache));
    expect(first.status, first.stderr).toBe(0);
    expect(first.json).toMatchObject({ total: fx.total, extracted: fx.total, skipped: 0, duplicates: 0, entries: fx.total });
    expect(first.json['notes']).toEqual([expect.stringContaining(`${join(data, fx.classes[0]!, 'up')}: a link loop`)]);
    // The second run finds its own cache among the class folders: skipped, said so, nothing else changes.
    const second = await runCliWithin(cf(data, cache));
    expect(second.status, second.stderr).toBe(0);
    expect(second.json).toMatchObject({ total: fx.total, extracted: 0, skipped: fx.total, duplicates: 0, entries: fx.total });
    expect(second.json['notes']).toEqual([`skipped 1 folder(s) that are not data: ${cache} (a LevelDB feature cache)`, expect.stringContaining('a link loop')]);
  });

  it('duplicates on a fresh cache are duplicates, not skipped; the same bytes in two classes is SPLITFIT_DATA_CONFLICT', async () => {
    const data = join(cliDir, 'dup-data');
    await mkdir(data);
    execFileSync('cp', ['-r', ...fx.classes.map((c) => join(fx.data, c)), data]);
    const [a, b] = fx.classes as [string, string];
    const first = (await readdir(join(data, a))).sort()[0]!;
    execFileSync('cp', [join(data, a, first), join(data, a, `zz-copy-${first}`)]);
    const r = await runCliWithin(cf(data, join(cliDir, 'dup-cache')));
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ total: fx.total, extracted: fx.total, skipped: 0, duplicates: 1, entries: fx.total });

    execFileSync('cp', [join(data, a, first), join(data, b, 'mislabelled.png')]);
    const before = await snapshotCache(join(cliDir, 'dup-cache'));
    expectCoded(await runCliWithin(cf(data, join(cliDir, 'dup-cache'))), 'SPLITFIT_DATA_CONFLICT', [join(data, a, first), join(data, b, 'mislabelled.png')]);
    expect(diffSnapshots(before, await snapshotCache(join(cliDir, 'dup-cache'))), 'the refused run changed the cache').toEqual([]);
  });

  it('predict on a folder answers once per file, copies included', async () => {
    const folder = join(cliDir, 'predict-dups');
    execFileSync('cp', ['-r', join(fx.data, fx.classes[0]!), folder]);
    const files = (await readdir(folder)).sort();
    execFileSync('cp', [join(folder, files[0]!), join(folder, `copy-${files[0]}`)]);
    const r = await runCliWithin(['predict', '--model', fx.model, folder]);
    expect(r.status, r.stderr).toBe(0);
    const predictions = r.json['predictions'] as { file: string; probability: number }[];
    expect(predictions.map((p) => p.file)).toEqual([...files, `copy-${files[0]}`].sort().map((f) => join(folder, f)));
    const byFile = new Map(predictions.map((p) => [p.file, p.probability]));
    expect(byFile.get(join(folder, `copy-${files[0]}`))).toBe(byFile.get(join(folder, files[0]!)));
  });

  it('an IDX labels file with a stray byte: SPLITFIT_DATA_DECODE naming the row, not a 201-class cache', async () => {
    const base = join(cliDir, 'stray');
    const labels = new Uint8Array(8).map((_, i) => i % 2);
    labels[5] = 200;
    await writeAt(join(base, 's-labels-idx1-ubyte'), idx([8], labels));
    const images = await writeAt(join(base, 's-images-idx3-ubyte'), idx([8, 16, 16, 3], new Uint8Array(8 * 16 * 16 * 3).map((_, i) => i % 251)));
    expectCoded(await runCliWithin(cf(images, join(cliDir, 'stray-cache'))), 'SPLITFIT_DATA_DECODE', ['200 at row 5', 'never 2..199']);
    expect(await exists(join(cliDir, 'stray-cache')), 'no cache is created for a refused data set').toBe(false);
  });
});
