import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage, openDataSource, type RawImage, SplitfitError } from '../src/index.js';
import { describeDecode, type DecodeTarget } from '../src/data/decode.js';
import { PIXEL_PIPELINE } from '../src/data/pixels.js';
import { makeTempDir, MNIST_DIR, mnistSubset, png, png16, solid, tinyBmp, TWEMOJI_DIR, twemojiByCategory, writeAt } from './data-fixtures.js';

const rgb = (height: number, width: number): DecodeTarget => ({ height, width, channels: 3 });
const gray = (height: number, width: number): DecodeTarget => ({ height, width, channels: 1 });

/** Pixel `i` of an HWC buffer as an array of its channels. */
function pixel(data: Uint8Array, channels: number, i: number): number[] {
  return Array.from(data.subarray(i * channels, (i + 1) * channels));
}

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await makeTempDir('decode'));
});
afterAll(() => cleanup());

describe('decodeImage: pixels', () => {
  it('returns the exact pixels of a PNG decoded at its own size', async () => {
    const pixels = Array.from({ length: 4 * 3 * 3 }, (_, i) => (i * 37) % 256);
    const out = await decodeImage(await png(pixels, 4, 3, 3), rgb(3, 4), 'a.png');
    expect(out).toBeInstanceOf(Uint8Array);
    expect(Array.from(out)).toEqual(pixels);
  });

  it('resizes to exactly the target, ignoring the aspect ratio (fit: fill)', async () => {
    // 64 wide × 16 high: a black band at the left edge, a white band at the right, gray between.
    // Squashed to 8 × 8 both edge bands survive; `cover` would crop them away, `contain` would add bars.
    const px = Buffer.alloc(64 * 16 * 3, 128);
    for (let y = 0; y < 16; y++) {
      px.fill(0, y * 64 * 3, (y * 64 + 8) * 3);
      px.fill(255, (y * 64 + 56) * 3, (y * 64 + 64) * 3);
    }
    const out = await decodeImage(await png(px, 64, 16, 3), rgb(8, 8), 'wide.png');
    expect(out.length).toBe(8 * 8 * 3);
    for (let y = 0; y < 8; y++) {
      expect(Math.max(...pixel(out, 3, y * 8))).toBeLessThan(40);
      expect(Math.min(...pixel(out, 3, y * 8 + 7))).toBeGreaterThan(215);
      expect(Math.abs(pixel(out, 3, y * 8 + 4)[0]! - 128)).toBeLessThan(10);
    }
  });

  it('turns a gray PNG into 3 identical channels', async () => {
    const values = [0, 17, 128, 200, 254, 255];
    const out = await decodeImage(await png(values, 3, 2, 1), rgb(2, 3), 'gray.png');
    expect(Array.from({ length: 6 }, (_, i) => pixel(out, 3, i))).toEqual(values.map((v) => [v, v, v]));
  });

  it('converts colour to ITU-R 601-2 luma for channels: 1 and keeps gray unchanged', async () => {
    const colours = await png([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255], 2, 2, 3);
    expect(Array.from(await decodeImage(colours, gray(2, 2), 'rgb.png'))).toEqual([76, 150, 29, 255]);
    const grays = [0, 1, 127, 255];
    expect(Array.from(await decodeImage(await png(grays, 2, 2, 1), gray(2, 2), 'g.png'))).toEqual(grays);
  });

  it('composites transparent pixels on white', async () => {
    // transparent red, half-transparent red, opaque red, transparent black
    const rgba = await png([255, 0, 0, 0, 255, 0, 0, 128, 255, 0, 0, 255, 0, 0, 0, 0], 2, 2, 4);
    const out = await decodeImage(rgba, rgb(2, 2), 'alpha.png');
    expect(pixel(out, 3, 0)).toEqual([255, 255, 255]);
    expect(pixel(out, 3, 1)[0]).toBe(255);
    expect(Math.abs(pixel(out, 3, 1)[1]! - 127)).toBeLessThanOrEqual(1);
    expect(pixel(out, 3, 2)).toEqual([255, 0, 0]);
    expect(pixel(out, 3, 3)).toEqual([255, 255, 255]);
    const grayAlpha = await png([0, 0, 90, 255], 2, 1, 2);
    expect(Array.from(await decodeImage(grayAlpha, gray(1, 2), 'ga.png'))).toEqual([255, 90]);
  });

  it('reduces 16-bit PNGs to 8 bits (v / 257)', async () => {
    const rgb16 = png16([0, 32768, 257 * 100, 65535, 65535, 65535, 257 * 10, 257 * 20, 257 * 30, 0, 0, 0], 2, 2, 3);
    expect((await sharp(rgb16).metadata()).depth).toBe('ushort');
    const out = await decodeImage(rgb16, rgb(2, 2), 'deep.png');
    expect(Array.from(out)).toEqual([0, 128, 100, 255, 255, 255, 10, 20, 30, 0, 0, 0]);
    const gray16 = png16([0, 65535, 32768, 257 * 77], 2, 2, 1);
    expect(Array.from(await decodeImage(gray16, gray(2, 2), 'g16.png'))).toEqual([0, 255, 128, 77]);
    const rgba16 = png16([0, 0, 0, 0, 65535, 0, 0, 65535], 2, 1, 4);
    expect(Array.from(await decodeImage(rgba16, gray(1, 2), 'a16.png'))).toEqual([255, 76]);
  });

  it('decodes JPEG within lossy tolerance', async () => {
    const out = await decodeImage(await solid([200, 100, 50], 'jpeg', 32), rgb(16, 16), 'a.jpg');
    const centre = pixel(out, 3, 8 * 16 + 8);
    [200, 100, 50].forEach((v, c) => expect(Math.abs(centre[c]! - v)).toBeLessThanOrEqual(4));
  });

  it('applies EXIF orientation (as the image is shown, not as it is stored)', async () => {
    // Stored 8 wide × 4 high, left half black; orientation 6 shows it rotated 90° clockwise: black on top.
    const px = Buffer.alloc(8 * 4 * 3);
    for (let y = 0; y < 4; y++) px.fill(255, (y * 8 + 4) * 3, (y * 8 + 8) * 3);
    const jpeg = await sharp(px, { raw: { width: 8, height: 4, channels: 3 } })
      .jpeg({ quality: 100 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const out = await decodeImage(jpeg, gray(8, 4), 'rotated.jpg');
    expect(Array.from(out.subarray(0, 4)).every((v) => v < 20)).toBe(true);
    expect(Array.from(out.subarray(28, 32)).every((v) => v > 235)).toBe(true);
  });

  it('real data: a 64×64 Twemoji PNG (RGBA) becomes 224×224×3 with white where it was transparent', async () => {
    const [name] = twemojiByCategory(['Animals & Nature'], 1).get('Animals & Nature')!;
    const bytes = await readFile(join(TWEMOJI_DIR, name!));
    const meta = await sharp(bytes).metadata();
    expect([meta.width, meta.height, meta.channels]).toEqual([64, 64, 4]);
    const out = await decodeImage(bytes, rgb(224, 224), name!);
    expect(out.length).toBe(224 * 224 * 3);
    expect(pixel(out, 3, 0)).toEqual([255, 255, 255]);
    expect(pixel(out, 3, 224 * 224 - 1)).toEqual([255, 255, 255]);
    expect(out.some((v) => v < 200)).toBe(true);
  });
});

describe('decodeImage: raw pixels (IDX)', () => {
  it('returns a copy of raw pixels already at the target size', async () => {
    const input: RawImage = { raw: new Uint8Array([1, 2, 3, 4]), width: 2, height: 2, channels: 1 };
    const out = await decodeImage(input, gray(2, 2), 'x.idx#0');
    expect(Array.from(out)).toEqual([1, 2, 3, 4]);
    out[0] = 99;
    expect(input.raw[0]).toBe(1);
  });

  it('real data: an MNIST digit resized to 56×56×3 has 3 equal channels and keeps its ink', async () => {
    const source = await openDataSource(join(MNIST_DIR, 't10k-images-idx3-ubyte'));
    const sample = source.samples[0]!;
    const out = await decodeImage(await sample.load(), rgb(56, 56), sample.source);
    expect(out.length).toBe(56 * 56 * 3);
    for (let i = 0; i < 56 * 56; i++) {
      const [r, g, b] = pixel(out, 3, i);
      expect(r === g && g === b).toBe(true);
    }
    const ink = (a: ArrayLike<number>): number => Array.from(a).reduce((s, v) => s + v, 0) / a.length;
    const original = ink(mnistSubset(1).images);
    expect(Math.abs(ink(out) - original)).toBeLessThan(original * 0.05);
    expect(pixel(out, 3, 0)).toEqual([0, 0, 0]);
  });

  it('a raw buffer of the wrong length is SPLITFIT_DATA_DECODE', async () => {
    await expect(
      decodeImage({ raw: new Uint8Array(5), width: 2, height: 2, channels: 1 }, gray(2, 2), 'bad.idx#3'),
    ).rejects.toMatchObject({ code: 'SPLITFIT_DATA_DECODE', message: expect.stringContaining('bad.idx#3') });
  });
});

describe('decodeImage: failures are SPLITFIT_DATA_DECODE naming the file and the reason', () => {
  async function failure(name: string, bytes: Buffer): Promise<SplitfitError> {
    const path = await writeAt(join(dir, name), bytes);
    const err = await decodeImage(await readFile(path), rgb(8, 8), path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SplitfitError);
    expect((err as SplitfitError).code).toBe('SPLITFIT_DATA_DECODE');
    expect((err as SplitfitError).message).toContain(path);
    return err as SplitfitError;
  }

  it('zero-byte file', async () => {
    const err = await failure('empty.png', Buffer.alloc(0));
    expect(err.message).toContain('empty (0 bytes)');
  });

  it('truncated PNG and truncated JPEG', async () => {
    const pngBytes = await png(Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 7) % 251), 32, 32, 3);
    const truncatedPng = await failure('cut.png', pngBytes.subarray(0, Math.floor(pngBytes.length / 2)));
    expect(truncatedPng.message).toContain('truncated or damaged');
    expect(truncatedPng.cause).toBeInstanceOf(Error);
    const jpegBytes = await solid([10, 200, 30], 'jpeg', 64);
    const truncatedJpeg = await failure('cut.jpg', jpegBytes.subarray(0, Math.floor(jpegBytes.length / 2)));
    expect(truncatedJpeg.message).toContain('truncated or damaged');
  });

  it('a text file named .png, and a BMP (not supported by sharp)', async () => {
    const text = await failure('x.png', Buffer.from('this is not an image\n'));
    expect(text.message).toContain('not an image in a supported format');
    const bmp = tinyBmp();
    expect((await failure('x.bmp', bmp)).message).toContain('supported format');
  });

  it('an invalid target is a programmer error (TypeError)', async () => {
    const bytes = await solid([1, 2, 3]);
    await expect(decodeImage(bytes, { height: 0, width: 8, channels: 3 }, 'a')).rejects.toBeInstanceOf(TypeError);
    await expect(decodeImage(bytes, { height: 8, width: 8, channels: 4 as 3 }, 'a')).rejects.toBeInstanceOf(TypeError);
  });
});

describe('decode settings', () => {
  it('runs sharp with one thread per image and no operation cache; describeDecode names the libvips version', () => {
    expect(sharp.concurrency()).toBe(1);
    expect(sharp.cache()).toMatchObject({ files: { max: 0 }, items: { max: 0 } });
    expect(describeDecode()).toContain(`vips-${sharp.versions.vips}`);
    expect(describeDecode()).toContain(PIXEL_PIPELINE);
  });
});
