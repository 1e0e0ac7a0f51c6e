import { createHash } from 'node:crypto';
import { constants as bufferConstants } from 'node:buffer';
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { SplitfitError } from '../errors.js';
import { NotRegularFileError, readRegularFile } from './regular-file.js';
import type { DataSource, RawImage, Sample } from './types.js';

/** Fashion-MNIST class names; position = the numeric IDX label. Pass as `classNames` to `openDataSource`. */
export const FASHION_MNIST_CLASSES: readonly string[] = Object.freeze([
  't-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot',
]);

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

/** Largest IDX payload splitfit holds: one Buffer (4 GiB on Node 20). */
const MAX_IDX_BYTES = bufferConstants.MAX_LENGTH;

/**
 * Reads an IDX file (MNIST format), gzip-compressed or raw — recognised by content, not by name.
 * A gzip file is inflated as a stream and stopped as soon as it passes the size its header declares,
 * so a small file that inflates to gigabytes is refused after reading little more than its header.
 * Throws `NotIdxError` when the bytes are not IDX at all, `SPLITFIT_DATA_DECODE` when they are a damaged
 * IDX (or the path is not a regular file).
 */
export async function readIdx(file: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readRegularFile(file);
  } catch (err) {
    if (err instanceof NotRegularFileError) throw decodeError(file, `is ${err.kind}, not a regular file`, err);
    throw new SplitfitError('SPLITFIT_IO', `cannot read ${file}: ${String(err)}`, { cause: err });
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = await gunzipBounded(bytes, file);
  const header = parseHeader(bytes, file);
  if (header === undefined) {
    if (bytes.length < 4) throw new NotIdxError(`${file} is not an IDX file`);
    throw decodeError(file, 'truncated header');
  }
  const actual = bytes.length - header.length;
  if (actual !== header.dataBytes) {
    throw decodeError(
      file,
      `dimensions [${header.dims.join(', ')}] need ${header.dataBytes} data bytes but the file has ${actual}${actual < header.dataBytes ? ' (truncated?)' : ''}`,
    );
  }
  // A plain Uint8Array view: Buffer's slice() would share memory where a copy is meant.
  return { dims: header.dims, data: new Uint8Array(bytes.buffer, bytes.byteOffset + header.length, header.dataBytes) };
}

interface IdxHeader {
  dims: number[];
  /** Header bytes: 4 + 4 per dimension. */
  length: number;
  /** Payload bytes the dimensions call for. */
  dataBytes: number;
}

/**
 * The header at the start of `bytes`, or `undefined` when more bytes are needed to read it.
 * Throws `NotIdxError` for bytes that are not IDX, `SPLITFIT_DATA_DECODE` for a type splitfit does not
 * read or a size it cannot hold.
 */
function parseHeader(bytes: Uint8Array, file: string): IdxHeader | undefined {
  if (bytes.length >= 2 && (bytes[0] !== 0 || bytes[1] !== 0)) throw new NotIdxError(`${file} is not an IDX file`);
  if (bytes.length < 4) return undefined;
  const type = bytes[2]!;
  const ndims = bytes[3]!;
  if (!(type in IDX_TYPE_NAMES) || ndims === 0) throw new NotIdxError(`${file} is not an IDX file`);
  if (type !== IDX_UBYTE) {
    throw decodeError(file, `holds ${IDX_TYPE_NAMES[type]} values; only unsigned bytes (type 0x08) are supported`);
  }
  const length = 4 + 4 * ndims;
  if (bytes.length < length) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i, false));
  const dataBytes = dims.reduce((a, b) => a * b, 1);
  if (dataBytes > MAX_IDX_BYTES - length) {
    throw decodeError(file, `dimensions [${dims.join(', ')}] declare ${dataBytes} data bytes, more than the ${MAX_IDX_BYTES} splitfit can hold; the header is damaged or the data set must be split`);
  }
  return { dims, length, dataBytes };
}

/** Inflates a gzip IDX file, stopping as soon as the output passes what the IDX header declares. */
function gunzipBounded(compressed: Uint8Array, file: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const gunzip = createGunzip();
    const chunks: Buffer[] = [];
    let total = 0;
    let limit: number | undefined;
    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      gunzip.destroy();
      reject(err);
    };
    gunzip.on('data', (chunk: Buffer) => {
      if (settled) return;
      chunks.push(chunk);
      total += chunk.length;
      try {
        if (limit === undefined) {
          const header = parseHeader(chunks.length === 1 ? chunk : Buffer.concat(chunks, total), file);
          if (header !== undefined) limit = header.length + header.dataBytes;
        }
      } catch (err) {
        fail(err);
        return;
      }
      if (limit !== undefined && total > limit) {
        fail(decodeError(file, `inflates to more than the ${limit} bytes its header declares (stopped after ${total}); the file is damaged or not what it claims`));
      }
    });
    gunzip.on('error', (err) => fail(decodeError(file, `gzip data is damaged (${err.message})`, err)));
    gunzip.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks, total));
    });
    gunzip.end(compressed);
  });
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
  let notes: string[] = [];
  if (options.labels === 'infer') {
    const labelsFile = options.labelsFile ?? (await findLabelsFile(imagesFile));
    values = await readLabels(labelsFile, imagesFile, count);
    ({ labels, notes } = labelNames(values, options.classNames, labelsFile));
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
  return { kind: 'idx', root: imagesFile, labels, samples, notes };
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

/**
 * Names in numeric label order, so a label's class index is its IDX value. Without `classNames` the
 * classes are the values 0..max, so every one of them must occur: one stray byte (200 in a 0/1 file)
 * would otherwise make a 201-class head. With `classNames` the user names the classes, and those with
 * no sample are reported in `notes`.
 */
function labelNames(
  values: Uint8Array,
  classNames: readonly string[] | undefined,
  labelsFile: string,
): { labels: string[]; notes: string[] } {
  const counts = new Array<number>(256).fill(0);
  for (const v of values) counts[v]!++;
  const max = counts.findLastIndex((c) => c > 0);
  if (!classNames) {
    const unused = unusedValues(counts, max + 1);
    if (unused.length > 0) {
      const firstGap = unused[0]!;
      const stray: string[] = [];
      values.forEach((v, row) => {
        if (v > firstGap) stray.push(`${v} at row ${row}`);
      });
      throw decodeError(
        labelsFile,
        `labels use values up to ${max} but never ${ranges(unused)}, so ${unused.length} of ${max + 1} classes would have no samples; ` +
          `values above the gap: ${stray.slice(0, 10).join(', ')}${stray.length > 10 ? `, and ${stray.length - 10} more` : ''} (rows count from 0). ` +
          `Fix or drop those rows, or pass classNames (one name per value 0..${max}) if the empty classes are meant`,
      );
    }
    return { labels: Array.from({ length: max + 1 }, (_, i) => String(i)), notes: [] };
  }
  if (new Set(classNames).size !== classNames.length || classNames.some((n) => n === '')) {
    throw new SplitfitError('SPLITFIT_USAGE', `classNames must be distinct non-empty names, got ${JSON.stringify(classNames)}`);
  }
  if (classNames.length <= max) {
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `classNames has ${classNames.length} names but ${labelsFile} uses label ${max}; give one name per label 0..${max}`,
    );
  }
  const unused = unusedValues(counts, classNames.length);
  const notes =
    unused.length === 0
      ? []
      : [`${unused.length} of ${classNames.length} classes have no samples in ${labelsFile}: ${unused.map((v) => `'${classNames[v]}' (${v})`).join(', ')}`];
  return { labels: [...classNames], notes };
}

function unusedValues(counts: readonly number[], classes: number): number[] {
  return Array.from({ length: classes }, (_, v) => v).filter((v) => counts[v] === 0);
}

/** `[2, 3, 4, 9]` → `2..4, 9`. */
function ranges(sorted: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(j === i ? String(sorted[i]) : `${sorted[i]}..${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
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
