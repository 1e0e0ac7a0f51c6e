// The shared pixel pipeline (src/data/pixels.ts): its arithmetic against tfjs' bilinear resize and
// hand-computed values, and decodeImage = sharp's decode + this pipeline (the browser's contract).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../src/data/decode.js';
import { type DecodedPixels, toInputPixels } from '../src/data/pixels.js';
import { png, TWEMOJI_DIR } from './data-fixtures.js';

/** A seeded pseudo-random image (xorshift), so every pixel differs from its neighbours. */
function noise(width: number, height: number, channels: 1 | 3 | 4, seed = 7): DecodedPixels & { data: Uint8Array } {
  const data = new Uint8Array(width * height * channels);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    data[i] = s & 255;
  }
  return { data, width, height, channels };
}

describe('toInputPixels', () => {
  it('upscales exactly like tf.image.resizeBilinear with half-pixel centres (before rounding)', () => {
    for (const [w, h, ow, oh] of [
      [64, 64, 224, 224],
      [28, 28, 96, 96],
      [37, 19, 101, 64],
    ] as const) {
      const image = noise(w, h, 3);
      const ours = toInputPixels(image, { width: ow, height: oh, channels: 3 });
      const reference = tf.tidy(() => tf.image.resizeBilinear(tf.tensor3d(image.data, [h, w, 3], 'float32'), [oh, ow], false, true).dataSync());
      let worst = 0;
      for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - reference[i]!));
      // Rounding to uint8 moves a value by at most 0.5; float32 reference arithmetic adds ~1e-4.
      expect(worst).toBeLessThanOrEqual(0.5 + 1e-3);
    }
  });

  it('keeps a constant image constant at every scale, and a linear ramp linear when shrinking', () => {
    const flat: DecodedPixels = { data: new Uint8Array(301 * 173 * 3).fill(200), width: 301, height: 173, channels: 3 };
    for (const [ow, oh] of [[224, 224], [17, 5], [1, 1], [640, 480]] as const) {
      expect(new Set(toInputPixels(flat, { width: ow, height: oh, channels: 3 }))).toEqual(new Set([200]));
    }
    // A horizontal ramp 0..255 over 1,024 columns, shrunk 8×: output column i centres on input
    // (i + 0.5)·8, whose ramp value the triangle filter reproduces away from the edges.
    const w = 1024;
    const ramp = new Uint8Array(w * 4);
    for (let y = 0; y < 4; y++) for (let x = 0; x < w; x++) ramp[y * w + x] = Math.floor((x * 256) / w);
    const out = toInputPixels({ data: ramp, width: w, height: 4, channels: 1 }, { width: 128, height: 1, channels: 1 });
    for (let i = 2; i < 126; i++) expect(Math.abs(out[i]! - ((i + 0.5) * 8 * 256) / w + 0.5)).toBeLessThanOrEqual(1);
  });

  it('antialiases a large downscale: a one-pixel checkerboard becomes mid-gray, not aliasing', () => {
    const n = 400;
    const board = new Uint8Array(n * n);
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) board[y * n + x] = (x + y) % 2 === 0 ? 0 : 255;
    const out = toInputPixels({ data: board, width: n, height: n, channels: 1 }, { width: 50, height: 50, channels: 1 });
    for (const v of out) expect(Math.abs(v - 127.5)).toBeLessThanOrEqual(4);
  });

  it('composites straight alpha on white, then converts gray ↔ RGB', () => {
    const rgba = new Uint8Array([255, 0, 0, 255, 255, 0, 0, 0, 0, 0, 255, 128, 10, 20, 30, 1]);
    const out = toInputPixels({ data: rgba, width: 4, height: 1, channels: 4 }, { width: 4, height: 1, channels: 3 });
    // c·a/255 + 255·(255 − a)/255: blue at 128 → (0·128 + 255·127)/255 = 127, (255·128 + 255·127)/255 = 255.
    expect(Array.from(out)).toEqual([255, 0, 0, 255, 255, 255, 127, 127, 255, 254, 254, 254]);
    // Pure red → luma 76 (PIL's 299/587/114); gray input → replicated RGB.
    expect(Array.from(toInputPixels({ data: new Uint8Array([255, 0, 0]), width: 1, height: 1, channels: 3 }, { width: 1, height: 1, channels: 1 }))).toEqual([76]);
    expect(Array.from(toInputPixels({ data: new Uint8Array([9, 200]), width: 2, height: 1, channels: 1 }, { width: 2, height: 1, channels: 3 }))).toEqual([9, 9, 9, 200, 200, 200]);
  });

  it('refuses malformed images and targets with TypeErrors naming the numbers', () => {
    expect(() => toInputPixels({ data: new Uint8Array(5), width: 2, height: 1, channels: 3 }, { width: 1, height: 1, channels: 3 })).toThrow(/holds 5 bytes, expected 2×1×3 = 6/);
    expect(() => toInputPixels(noise(2, 2, 3), { width: 0, height: 1, channels: 3 })).toThrow(TypeError);
    expect(() => toInputPixels(noise(2, 2, 3), { width: 1, height: 1, channels: 4 as 3 })).toThrow(/target channels must be 1 or 3/);
  });
});

describe('decodeImage = sharp decode + the shared pipeline', () => {
  it('gives the bytes toInputPixels gives on the RGBA pixels sharp decodes (what a browser canvas hands the browser module)', async () => {
    const file = join(TWEMOJI_DIR, '1f600.png');
    const bytes = await readFile(file);
    const { data, info } = await sharp(bytes).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const rgba: DecodedPixels = { data: new Uint8Array(data), width: info.width, height: info.height, channels: 4 };
    const target = { width: 224, height: 224, channels: 3 } as const;
    expect(Buffer.from(await decodeImage(bytes, target, file)).equals(Buffer.from(toInputPixels(rgba, target)))).toBe(true);
    // And a transparent pixel reads as white, not black (the trap of tf.browser.fromPixels).
    const clear = await png(new Uint8Array([0, 0, 0, 0]), 1, 1, 4);
    expect(Array.from(await decodeImage(clear, { width: 1, height: 1, channels: 3 }, 'clear.png'))).toEqual([255, 255, 255]);
  });
});
