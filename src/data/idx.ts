import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { SplitfitError } from '../errors.js';
import type { DataSource, RawImage, Sample } from './types.js';

/** Fashion-MNIST class names; position = the numeric IDX label. Pass as `classNames` to `openDataSource`. */
export const FASHION_MNIST_CLASSES: readonly string[] = Object.freeze([
  't-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot',
]);

const gunzipAsync = promisify(gunzip);
const IDX_UBYTE = 0x08;
const IDX_TYPE_NAMES: Record<number, string> = {
  0x08: 'unsigned byte', 0x09: 'signed byte', 0x0b: 'int16', 0x0c: 'int32', 0x0d: 'float32', 0x0e: 'float64',
};

/** A decoded IDX file: its dimensions and its unsigned-byte payload. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Thrown (as `SPLITFIT_USAGE` by the caller) when a file does not start like an IDX file. */
export class NotIdxError extends Error {}

/**
 * Reads an IDX file (MNIST format), gzip-compressed or raw — recognised by content, not by name.
 * Throws `NotIdxError` when the bytes are not IDX at all, `SPLITFIT_DATA_DECODE` when they are a damaged IDX.
 */
export async function readIdx(file: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new SplitfitError('SPLITFIT_IO', `cannot read ${file}: ${String(err)}`, { cause: err });
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = await gunzipAsync(bytes);
    } catch (err) {
      throw decodeError(file, `gzip data is damaged (${(err as Error).message})`, err);
    }
  }
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new NotIdxError(`${file} is not an IDX file`);
  const type = bytes[2]!;
  const ndims = bytes[3]!;
  if (!(type in IDX_TYPE_NAMES) || ndims === 0) throw new NotIdxError(`${file} is not an IDX file`);
  if (type !== IDX_UBYTE) {
    throw decodeError(file, `holds ${IDX_TYPE_NAMES[type]} values; only unsigned bytes (type 0x08) are supported`);
  }
  const headerLength = 4 + 4 * ndims;
  if (bytes.length < headerLength) throw decodeError(file, 'truncated header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const actual = bytes.length - headerLength;
  if (actual !== expected) {
    throw decodeError(
      file,
      `dimensions [${dims.join(', ')}] need ${expected} data bytes but the file has ${actual}${actual < expected ? ' (truncated?)' : ''}`,
    );
  }
  // A plain Uint8Array view: Buffer's slice() would share memory where a copy is meant.
  return { dims, data: new Uint8Array(bytes.buffer, bytes.byteOffset + headerLength, expected) };
}

export interface OpenIdxOptions {
  labels: 'infer' | 'none';
  classNames: readonly string[] | undefined;
  /** Explicit labels file (from an `images:labels` spec); otherwise derived from the images file name. */
  labelsFile: string | undefined;
}

/** An IDX images file (dims `[count, rows, cols]` or `[count, rows, cols, channels]`) with its labels file. */
export async function openIdx(imagesFile: string, options: OpenIdxOptions): Promise<DataSource> {
  const images = await readIdx(imagesFile);
  const [count, height, width, channels = 1] = images.dims;
  if (
    count === undefined || height === undefined || width === undefined ||
    images.dims.length > 4 || (channels !== 1 && channels !== 3 && channels !== 4)
  ) {
    throw decodeError(
      imagesFile,
      `expected image dimensions [count, rows, cols] or [count, rows, cols, 1|3|4], found [${images.dims.join(', ')}]` +
        (images.dims.length === 1 ? ' (is this a labels file? pass the images file)' : ''),
    );
  }
  if (count === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `IDX file ${imagesFile} holds no images`);

  let values: Uint8Array | undefined;
  let labels: string[] = [];
  if (options.labels === 'infer') {
    const labelsFile = options.labelsFile ?? (await findLabelsFile(imagesFile));
    values = await readLabels(labelsFile, imagesFile, count);
    labels = labelNames(values, options.classNames, labelsFile);
  }

  const size = height * width * channels;
  const header = Buffer.from(`idx:${height}x${width}x${channels}\n`);
  const samples: Sample[] = [];
  for (let i = 0; i < count; i++) {
    const pixels = images.data.subarray(i * size, (i + 1) * size);
    const sample: Sample = {
      id: createHash('sha256').update(header).update(pixels).digest('hex'),
      source: `${imagesFile}#${i}`,
      // A copy, so a caller that writes into the pixels cannot change the data set.
      load: async (): Promise<RawImage> => ({ raw: pixels.slice(), width, height, channels }),
    };
    if (values) sample.label = labels[values[i]!]!;
    samples.push(sample);
  }
  return { kind: 'idx', root: imagesFile, labels, samples };
}

async function readLabels(labelsFile: string, imagesFile: string, count: number): Promise<Uint8Array> {
  let labels: IdxArray;
  try {
    labels = await readIdx(labelsFile);
  } catch (err) {
    if (err instanceof NotIdxError) throw decodeError(labelsFile, 'is not an IDX labels file', err);
    throw err;
  }
  if (labels.dims.length !== 1) {
    throw decodeError(labelsFile, `expected label dimensions [count], found [${labels.dims.join(', ')}]`);
  }
  if (labels.dims[0] !== count) {
    throw new SplitfitError(
      'SPLITFIT_DATA_DECODE',
      `IDX count mismatch: ${imagesFile} holds ${count} images but ${labelsFile} holds ${labels.dims[0]} labels`,
    );
  }
  return labels.data;
}

/** Names in numeric label order, so a label's class index is its IDX value. */
function labelNames(values: Uint8Array, classNames: readonly string[] | undefined, labelsFile: string): string[] {
  const max = values.reduce((m, v) => (v > m ? v : m), 0);
  if (!classNames) return Array.from({ length: max + 1 }, (_, i) => String(i));
  if (new Set(classNames).size !== classNames.length || classNames.some((n) => n === '')) {
    throw new SplitfitError('SPLITFIT_USAGE', `classNames must be distinct non-empty names, got ${JSON.stringify(classNames)}`);
  }
  if (classNames.length <= max) {
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `classNames has ${classNames.length} names but ${labelsFile} uses label ${max}; give one name per label 0..${max}`,
    );
  }
  return [...classNames];
}

/** `train-images-idx3-ubyte[.gz]` → `train-labels-idx1-ubyte[.gz]` in the same folder (either compression). */
async function findLabelsFile(imagesFile: string): Promise<string> {
  const name = basename(imagesFile);
  if (!name.includes('images-idx3')) {
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `cannot tell the labels file for ${imagesFile}: its name has no "images-idx3" to turn into "labels-idx1"; ` +
        `pass "images:labels" as the data spec, or open it with labels: 'none'`,
    );
  }
  const derived = join(dirname(imagesFile), name.replace('images-idx3', 'labels-idx1'));
  const candidates = derived.endsWith('.gz') ? [derived, derived.slice(0, -3)] : [derived, `${derived}.gz`];
  for (const candidate of candidates) {
    if (await stat(candidate).then((s) => s.isFile(), () => false)) return candidate;
  }
  throw new SplitfitError(
    'SPLITFIT_IO',
    `labels file for ${imagesFile} not found: looked for ${candidates.join(' and ')}; pass "images:labels" as the data spec`,
  );
}

function decodeError(file: string, reason: string, cause?: unknown): SplitfitError {
  return new SplitfitError('SPLITFIT_DATA_DECODE', `IDX file ${file}: ${reason}`, cause === undefined ? undefined : { cause });
}
