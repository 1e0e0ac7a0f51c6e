/**
 * Quantized weights in the stock tfjs weights-manifest format: the encoder is checked against
 * tfjs-core's own decoder (`tf.io.decodeWeights`, the one `tf.loadLayersModel` runs), and a
 * quantized model loads with stock tfjs and predicts within stated bounds of the float32 one.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { isSplitfitError, loadModel } from '../src/index.js';
import { modelFiles } from '../src/model/io.js';
import { FLOAT16_MAX, float16Bits, isPerChannel, quantizeWeights, toUint8 } from '../src/model/quantize.js';
import { randomizeBatchNorm, residualToyModel } from './helpers/models.js';
import { maxAbsDiff } from './helpers/tensors.js';

const bytesOf = (a: Float32Array | Int32Array | Uint8Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Decodes with tfjs-core's decoder, as tf.loadLayersModel does. */
function decode(specs: tf.io.WeightsManifestEntry[], data: Uint8Array): Record<string, Float32Array | Int32Array | Uint8Array> {
  const tensors = tf.io.decodeWeights(data.slice().buffer, specs);
  const out = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, t.dataSync() as Float32Array]));
  tf.dispose(Object.values(tensors));
  return out;
}

describe('float16', () => {
  it('every finite half value survives tfjs decode → our encode bit for bit (all 63,488 of them)', () => {
    const bits = new Uint16Array(65536).map((_, i) => i).filter((b) => (b & 0x7c00) !== 0x7c00);
    const decoded = decode([{ name: 'h', shape: [bits.length], dtype: 'float32', quantization: { dtype: 'float16' } }], bytesOf(new Uint8Array(bits.buffer)))['h']!;
    let mismatches = 0;
    for (let i = 0; i < bits.length; i++) if (float16Bits(decoded[i]!) !== bits[i]) mismatches++;
    expect(bits.length).toBe(63488);
    expect(mismatches).toBe(0);
  });

  it('rounds to nearest, ties to even, subnormals and overflow included', () => {
    expect(float16Bits(1)).toBe(0x3c00);
    expect(float16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway between 1 and 1+2^-10: even (down)
    expect(float16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway between …01 and …02: even (up)
    expect(float16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above halfway: up
    expect(float16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float16Bits(2 ** -25)).toBe(0x0000); // halfway to 0: even
    expect(float16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(float16Bits(-0)).toBe(0x8000);
    expect(float16Bits(65504)).toBe(0x7bff);
    expect(float16Bits(65519)).toBe(0x7bff);
    expect(float16Bits(65520)).toBe(0x7c00); // rounds to Infinity
    expect(float16Bits(Number.NaN) & 0x7fff).toBeGreaterThan(0x7c00);
  });
});

describe('uint8 (affine, per tensor)', () => {
  it('keeps 0 exact and every value within scale/2, decoded by tfjs', () => {
    const values = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i * 0.37) * 3 + 0.8);
    values[17] = 0;
    const q = toUint8(values);
    const back = decode([{ name: 'w', shape: [1000], dtype: 'float32', quantization: { dtype: 'uint8', scale: q.scale, min: q.min } }], q.data)['w']!;
    expect(q.scale).toBeCloseTo((3.8 + 2.2) / 255, 2);
    expect(back[17]).toBe(0);
    let worst = 0;
    for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(back[i]! - values[i]!));
    expect(worst).toBeLessThanOrEqual(q.scale / 2 + 1e-6);
  });

  it('a positive-only tensor still includes 0 in its range; an all-zero tensor decodes to zeros', () => {
    const q = toUint8(new Float32Array([0.5, 1, 2]));
    expect(q.min).toBe(0);
    expect(q.data[2]).toBe(255);
    expect(toUint8(new Float32Array(4))).toEqual({ data: new Uint8Array(4), scale: 1, min: 0 });
  });
});

describe('quantizeWeights', () => {
  const specs: tf.io.WeightsManifestEntry[] = [
    { name: 'kernel', shape: [3, 2], dtype: 'float32' },
    { name: 'flag', shape: [3], dtype: 'bool' },
    { name: 'steps', shape: [2], dtype: 'int32' },
    { name: 'b', shape: [2], dtype: 'float32' },
  ];
  const kernel = [0.25, -1, 2, 0, 0.5, 1.5];
  const data = (b: number[]): Uint8Array =>
    new Uint8Array([...bytesOf(new Float32Array(kernel)), ...new Uint8Array([1, 0, 1]), ...bytesOf(new Int32Array([7, -123456789])), ...bytesOf(new Float32Array(b))]);

  it('quantizes float32 only: bool and int32 weights keep their bytes and carry no quantization field', () => {
    for (const mode of ['uint8', 'float16'] as const) {
      const q = quantizeWeights(specs, data([3, 4]), mode);
      // uint8: the per-channel vector `b` is stored as float16 (see isPerChannel).
      expect(q.specs.map((s) => s.quantization?.dtype)).toEqual([mode, undefined, undefined, 'float16']);
      expect(q.data.byteLength).toBe(mode === 'uint8' ? 6 + 3 + 8 + 4 : 12 + 3 + 8 + 4);
      const back = decode(q.specs, q.data);
      expect([...back['flag']!]).toEqual([1, 0, 1]);
      expect([...back['steps']!]).toEqual([7, -123456789]);
      expect([...back['b']!]).toEqual([3, 4]);
      const tol = mode === 'float16' ? 1e-3 : 3 / 255 / 2 + 1e-6;
      kernel.forEach((v, i) => expect(Math.abs(back['kernel']![i]! - v)).toBeLessThanOrEqual(tol));
      expect(back['kernel']![3]).toBe(0);
    }
  });

  it('per-channel vectors: at most one dimension above 1; beyond float16 range they stay float32 under uint8', () => {
    expect([[8], [1, 1, 8, 1], [1], []].map(isPerChannel)).toEqual([true, true, true, true]);
    expect([[3, 3, 8, 1], [8, 3]].map(isPerChannel)).toEqual([false, false]);
    const q = quantizeWeights(specs, data([1e5, 1]), 'uint8');
    expect(q.specs[3]!.quantization).toBeUndefined();
    expect([...decode(q.specs, q.data)['b']!]).toEqual([1e5, 1]);
  });

  it('refuses non-finite values, and values beyond ±65504 for float16, with SPLITFIT_NUMERIC naming the weight', () => {
    for (const [bad, mode] of [[Number.NaN, 'uint8'], [Infinity, 'float16'], [1e5, 'float16']] as const) {
      let err: unknown;
      try {
        quantizeWeights(specs, data([bad, 1]), mode);
      } catch (e) {
        err = e;
      }
      expect(isSplitfitError(err, 'SPLITFIT_NUMERIC'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/weight b holds .* at index 0/);
    }
    expect(FLOAT16_MAX).toBe(65504);
  });
});

describe('a quantized model with stock tfjs', () => {
  it('loads with tf.loadLayersModel (weights dequantized) and predicts close to float32; files are ½ and ~¼ the size', async () => {
    const model = residualToyModel(3);
    randomizeBatchNorm(model);
    const x = tf.randomUniform([4, 16, 16, 3], 0, 1, 'float32', 5);
    const y = model.predict(x) as tf.Tensor;
    const float = await modelFiles(model);
    const bounds = { float16: 1e-3, uint8: 0.05 };
    for (const mode of ['float16', 'uint8'] as const) {
      const files = await modelFiles(model, { quantize: mode });
      const json = JSON.parse(files.json) as tf.io.ModelJSON;
      const specs = json.weightsManifest[0]!.weights;
      expect(specs.every((s) => s.quantization?.dtype === (mode === 'uint8' && isPerChannel(s.shape) ? 'float16' : mode))).toBe(true);
      const size = (s: tf.io.WeightsManifestEntry): number => s.shape.reduce((a, b) => a * b, 1);
      const elements = specs.reduce((n, s) => n + size(s), 0);
      const vectors = specs.filter((s) => isPerChannel(s.shape)).reduce((n, s) => n + size(s), 0);
      expect(files.weights.byteLength).toBe(mode === 'uint8' ? elements - vectors + 2 * vectors : 2 * elements);
      expect(float.weights.byteLength).toBe(elements * 4);
      // The path of tf.loadLayersModel('file://…' or 'https://…'): model.json → artifacts → decodeWeights.
      const artifacts = await tf.io.getModelArtifactsForJSON(json, async (manifest) => [manifest.flatMap((g) => g.weights), files.weights.slice().buffer]);
      const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      const yq = loaded.predict(x) as tf.Tensor;
      const diff = maxAbsDiff(yq, y);
      expect(diff, `${mode}: max |Δp| ${diff}`).toBeLessThanOrEqual(bounds[mode]);
      expect(diff).toBeGreaterThan(0); // it really was quantized
      tf.dispose([yq]);
      loaded.dispose();
    }
    tf.dispose([x, y]);
    model.dispose();
  });

  it("splitfit's own loadModel reads a quantized folder (shard size checked against the quantized dtype)", async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'splitfit-quantize-'));
    const model = residualToyModel(4);
    const files = await modelFiles(model, { quantize: 'uint8' });
    await writeFile(join(dir, 'weights.bin'), files.weights);
    await writeFile(join(dir, 'model.json'), files.json);
    const loaded = await loadModel(join(dir, 'model.json'));
    const x = tf.ones([1, 16, 16, 3]);
    const d = maxAbsDiff(loaded.predict(x) as tf.Tensor, model.predict(x) as tf.Tensor);
    expect(d).toBeLessThanOrEqual(0.05);
    await writeFile(join(dir, 'weights.bin'), files.weights.subarray(1));
    await expect(loadModel(join(dir, 'model.json'))).rejects.toMatchObject({ code: 'SPLITFIT_MODEL_LOAD' });
  });
});
