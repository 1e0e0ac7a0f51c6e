/**
 * `splitfit export`: quantized and folded/unfolded re-exports of a train-head folder, written as one
 * committed folder that stock tfjs loads and `splitfit predict` reads without splitfit.json.
 */
import * as tf from '@tensorflow/tfjs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { exportModel, extractFeatures, loadModel, loadPredictor, type SplitfitManifest, trainHead, verifyFolder } from '../src/index.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { makeToyFixture, type ToyFixture } from './helpers/reliability.js';
import { expectNoTensorLeak, maxAbsDiff } from './helpers/tensors.js';
import { isPerChannel } from '../src/model/quantize.js';

let root: string;
let fx: ToyFixture;
/** Trained with the defaults (base folded) and with `foldBatchNorm: false`. */
let folded: string;
let unfolded: string;
let x: tf.Tensor4D;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-export-'));
  fx = await makeToyFixture(join(root, 'fx'), 6, 0.34);
  const cache = join(root, 'cache');
  await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache });
  folded = join(root, 'folded');
  unfolded = join(root, 'unfolded');
  await trainHead({ cache, out: folded, epochs: 3, learningRate: 0.01 });
  await trainHead({ cache, out: unfolded, epochs: 3, learningRate: 0.01, foldBatchNorm: false });
  x = tf.randomUniform([6, 16, 16, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
});

const exportCli = (args: string[]) => runCli(['export', ...args, '--json', ...backendArgs()]);
const predictOf = async (dir: string): Promise<tf.Tensor> => {
  const m = await loadModel(join(dir, 'model.json'));
  const y = m.predict(x) as tf.Tensor;
  return y;
};
const layerClasses = async (dir: string): Promise<string[]> => {
  type Topology = { config: { layers: { class_name: string }[] } };
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { modelTopology: Topology & { model_config?: Topology } };
  return (json.modelTopology.model_config ?? json.modelTopology).config.layers.map((l) => l.class_name);
};

describe('splitfit export --quantize', () => {
  it('uint8 and float16: BN as affine layers (re-stitched from the source), kernels uint8 / all float16, sizes from the manifest, predictions within bounds, committed', async () => {
    const ref = await predictOf(folded);
    const bounds = { uint8: 0.05, float16: 1e-3 };
    for (const q of ['uint8', 'float16'] as const) {
      const out = join(root, `export-${q}`);
      const r = await exportCli([folded, '--out', out, '--quantize', q]);
      expect(r.status, r.stderr).toBe(0);
      const res = r.json as { quantize: string; rebuilt: string; baseExport: string; bytes: { source: { weights: number }; exported: { weights: number } }; files: string[] };
      expect(res).toMatchObject({ quantize: q, rebuilt: 'affine', baseExport: 'affine' });
      expect((await stat(join(out, 'weights.bin'))).size).toBe(res.bytes.exported.weights);
      expect(res.files).toEqual(['head/model.json', 'head/weights.bin', 'model.json', 'splitfit.json', 'weights.bin']);
      const json = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as tf.io.ModelJSON;
      const specs = json.weightsManifest[0]!.weights;
      expect(specs.every((w) => w.quantization?.dtype === (q === 'uint8' && isPerChannel(w.shape) ? 'float16' : q))).toBe(true);
      const declared = specs.reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1) * (w.quantization!.dtype === 'uint8' ? 1 : 2), 0);
      expect(res.bytes.exported.weights).toBe(declared);
      expect(res.bytes.exported.weights / res.bytes.source.weights).toBeLessThan(q === 'uint8' ? 0.5 : 0.6);
      expect(await layerClasses(out)).not.toContain('BatchNormalization');
      // head/ is the source's, byte for byte (float32: what a later export re-stitches).
      expect(await readFile(join(out, 'head', 'weights.bin'))).toEqual(await readFile(join(folded, 'head', 'weights.bin')));
      const manifest = JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8')) as SplitfitManifest;
      expect(manifest).toMatchObject({ quantize: q, baseExport: 'affine', exportedFrom: join(folded, 'model.json') });
      expect((await verifyFolder(out))!.files.map((f) => f.path).sort()).toEqual(res.files);
      const y = await predictOf(out);
      const d = maxAbsDiff(y, ref);
      expect(d, `${q}: max |Δp| = ${d}`).toBeLessThanOrEqual(bounds[q]);
      y.dispose();
    }
    ref.dispose();
  });

  it('a quantized folder exported again as float32 comes back from head/ + the source: folded, within 1e-4 of the float32 folder', async () => {
    const out = join(root, 'back-to-float');
    const r = await exportCli([join(root, 'export-uint8'), '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ quantize: 'float32', rebuilt: 'folded', baseExport: 'folded' });
    const [a, b] = [await predictOf(folded), await predictOf(out)];
    expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(1e-4);
    tf.dispose([a, b]);
  });

  it('--validation-data scores the source and the export on the same samples; the text output names sizes and the change', async () => {
    const out = join(root, 'export-val');
    const r = await exportCli([folded, '--out', out, '--quantize', 'float16', '--validation-data', fx.validation!]);
    expect(r.status, r.stderr).toBe(0);
    const a = (r.json as { accuracy: { n: number; source: number; exported: number; change: number } }).accuracy;
    expect(a.n).toBe(6);
    expect(a.change).toBeCloseTo(a.exported - a.source, 12);
    const ev = await runCli(['evaluate', '--model', join(folded, 'model.json'), '--data', fx.validation!, '--json', ...backendArgs()]);
    expect(a.source).toBeCloseTo((ev.json as { accuracy: number }).accuracy, 12);
    const text = await runCli(['export', folded, '--out', join(root, 'export-text'), '--quantize', 'uint8', '--validation-data', fx.validation!, ...backendArgs()]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/weights: [\d.]+ KB → [\d.]+ KB \(uint8, [\d.]+ % of the source\)/);
    expect(text.stdout).toMatch(/base: affine \(re-stitched: affine\)/);
    expect(text.stdout).toMatch(/accuracy on 6 samples: source [\d.]+, exported [\d.]+ \([+-][\d.]+ points\)/);
  });

  it('the export works as model.json + weights.bin alone: splitfit predict gives the labels and probabilities of the folder', async () => {
    const out = join(root, 'export-uint8');
    const alone = join(root, 'alone');
    await mkdir(alone, { recursive: true });
    for (const f of ['model.json', 'weights.bin']) await cp(join(out, f), join(alone, f));
    const file = join(fx.data, fx.classes[0]!, (await readdir(join(fx.data, fx.classes[0]!)))[0]!);
    const a = await runCli(['predict', '--model', join(alone, 'model.json'), file, '--json', ...backendArgs()]);
    const b = await runCli(['predict', '--model', join(out, 'model.json'), file, '--json', ...backendArgs()]);
    expect(a.status, a.stderr).toBe(0);
    const pa = (a.json as { predictions: { label: string; probabilities: Record<string, number> }[] }).predictions[0]!;
    const pb = (b.json as { predictions: { label: string; probabilities: Record<string, number> }[] }).predictions[0]!;
    expect(Object.keys(pa.probabilities)).toEqual(fx.classes);
    expect(pa).toEqual(pb);
  });
});

describe('splitfit export: folding', () => {
  it('--no-fold-batch-norm on a folded folder re-stitches head/ onto the recorded source model: BN layers back, same predictions', async () => {
    const out = join(root, 'unfold');
    const r = await exportCli([folded, '--out', out, '--no-fold-batch-norm']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ baseExport: 'original', rebuilt: 'original', quantize: 'float32' });
    expect(await layerClasses(folded)).not.toContain('BatchNormalization');
    expect((await layerClasses(out)).filter((c) => c === 'BatchNormalization')).toHaveLength(3);
    const [a, b] = [await predictOf(folded), await predictOf(out)];
    expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(1e-4);
    tf.dispose([a, b]);
    expect(JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8'))).toMatchObject({ baseExport: 'original' });
  });

  it('the default on an unfolded folder folds it from its own files: no BN left, same predictions', async () => {
    const out = join(root, 'fold');
    const r = await exportCli([unfolded, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ baseExport: 'folded', rebuilt: 'folded' });
    expect(await layerClasses(out)).not.toContain('BatchNormalization');
    const [a, b] = [await predictOf(unfolded), await predictOf(out)];
    expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(1e-4);
    tf.dispose([a, b]);
  });

  it('unfolding without the source model: SPLITFIT_MODEL_LOAD naming the fix; --source-model supplies it', async () => {
    // A copy whose recorded source has moved (no commit record: a folder copied by hand).
    const moved = join(root, 'moved');
    await mkdir(join(moved, 'head'), { recursive: true });
    for (const f of ['model.json', 'weights.bin', 'head/model.json', 'head/weights.bin']) await cp(join(folded, f), join(moved, f));
    const manifest = JSON.parse(await readFile(join(folded, 'splitfit.json'), 'utf8')) as SplitfitManifest;
    await writeFile(join(moved, 'splitfit.json'), JSON.stringify({ ...manifest, model: join(root, 'gone', 'model.json') }));
    const r = await exportCli([moved, '--out', join(root, 'unfold-moved'), '--no-fold-batch-norm']);
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ error: { code: 'SPLITFIT_MODEL_LOAD' } });
    expect((r.json as { error: { message: string } }).error.message).toMatch(/holds its base with BatchNorm folded; an unfolded export re-stitches its head\/ onto the source model .*gone.*cannot be loaded.*--source-model/);
    await expect(stat(join(root, 'unfold-moved'))).rejects.toMatchObject({ code: 'ENOENT' });
    const q = await exportCli([moved, '--out', join(root, 'unfold-moved'), '--quantize', 'uint8']);
    expect(q.json).toMatchObject({ error: { code: 'SPLITFIT_MODEL_LOAD' } });
    expect((q.json as { error: { message: string } }).error.message).toMatch(/a quantized export \(BN as affine layers\) re-stitches .*--source-model.*--quantize/);
    const ok = await exportCli([moved, '--out', join(root, 'unfold-moved'), '--no-fold-batch-norm', '--source-model', fx.model]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({ rebuilt: 'original' });
  });

  it('another model at the recorded path (its base differs): refused by the features fingerprint', async () => {
    const other = join(root, 'other-src');
    const { residualToyModel } = await import('./helpers/models.js');
    const { saveModel } = await import('../src/index.js');
    const m = residualToyModel(9);
    await saveModel(m, other);
    m.dispose();
    const err = await exportModel({ model: folded, out: join(root, 'unfold-other'), foldBatchNorm: false, sourceModel: join(other, 'model.json') }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SPLITFIT_MODEL_LOAD' });
    expect((err as Error).message).toMatch(/no longer gives the base .*fingerprint [0-9a-f]+ ≠/);
  });
});

describe('exportModel (library)', () => {
  it('leaks no tensor, as-is or re-stitched (affine, unfolded, folded)', async () => {
    // Warm-up: tfjs keeps a few tensors alive after the first load of a backend's kernels.
    await exportModel({ model: folded, out: join(root, 'leak-warm'), quantize: 'uint8' });
    const cases: [string, Parameters<typeof exportModel>[0]][] = [
      ['as-is', { model: folded, out: join(root, 'leak-1') }],
      ['affine', { model: folded, out: join(root, 'leak-2'), quantize: 'float16' }],
      ['original', { model: folded, out: join(root, 'leak-3'), foldBatchNorm: false }],
      ['folded', { model: unfolded, out: join(root, 'leak-4') }],
    ];
    for (const [rebuilt, options] of cases) {
      const r = await expectNoTensorLeak(() => exportModel(options));
      expect(r.rebuilt).toBe(rebuilt);
    }
  });
});

describe('splitfit export: the output folder', () => {
  it('replaces an earlier export in one step, and removes the siblings a killed export left', async () => {
    const out = join(root, 'replace');
    expect((await exportCli([folded, '--out', out, '--quantize', 'uint8'])).status).toBe(0);
    const stale = join(root, '.replace.splitfit-new-999999999');
    await mkdir(join(stale, 'half'), { recursive: true });
    const r = await exportCli([folded, '--out', out, '--quantize', 'float16']);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as tf.io.ModelJSON;
    expect(json.weightsManifest[0]!.weights[0]!.quantization?.dtype).toBe('float16');
    await expect(stat(stale)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(root)).filter((n) => n.includes('.splitfit-new-'))).toEqual([]);
  });

  it('refuses --out = the folder exported, a file as --out, and a folder with neither splitfit.json nor metadata', async () => {
    const same = await exportCli([folded, '--out', folded]);
    expect(same.status).toBe(2);
    expect(same.json).toMatchObject({ error: { code: 'SPLITFIT_USAGE' } });
    const file = join(root, 'a-file');
    await writeFile(file, 'x');
    expect((await exportCli([folded, '--out', file])).json).toMatchObject({ error: { code: 'SPLITFIT_IO' } });
    const plain = await exportCli([join(fx.dir, 'toy'), '--out', join(root, 'plain')]);
    expect(plain.status).toBe(1);
    expect(plain.json).toMatchObject({ error: { code: 'SPLITFIT_MODEL_LOAD' } });
    expect((plain.json as { error: { message: string } }).error.message).toMatch(/neither a splitfit.json .* nor userDefinedMetadata.splitfit/);
    const bad = await exportCli([folded, '--out', join(root, 'bad-q'), '--quantize', 'int4']);
    expect(bad.status).toBe(2);
    // A wrong --validation-data is found before anything is written.
    const noData = await exportCli([folded, '--out', join(root, 'no-data'), '--validation-data', join(root, 'missing-data')]);
    expect(noData.status).not.toBe(0);
    expect((noData.json as { error: { code: string; message: string } }).error.message).toContain('missing-data');
    await expect(stat(join(root, 'no-data'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('train-head --quantize writes the stitched model quantized (head/ float32), readable by loadPredictor', async () => {
    const out = join(root, 'th-q');
    const r = await runCli(['train-head', '--cache', join(root, 'cache'), '--out', out, '--epochs', '3', '--lr', '0.01', '--quantize', 'uint8', '--json', ...backendArgs()]);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as tf.io.ModelJSON;
    expect(json.weightsManifest[0]!.weights.every((w) => w.quantization?.dtype === (isPerChannel(w.shape) ? 'float16' : 'uint8'))).toBe(true);
    const head = JSON.parse(await readFile(join(out, 'head', 'model.json'), 'utf8')) as tf.io.ModelJSON;
    expect(head.weightsManifest[0]!.weights.some((w) => w.quantization !== undefined)).toBe(false);
    expect(JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8'))).toMatchObject({ quantize: 'uint8', baseExport: 'affine' });
    expect(await layerClasses(out)).not.toContain('BatchNormalization');
    expect((await loadPredictor(out)).labels).toEqual(fx.classes);
    // Same seed and settings as `folded`: the float32 twin, within uint8's bound.
    const [a, b] = [await predictOf(folded), await predictOf(out)];
    expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(0.05);
    tf.dispose([a, b]);
    await rm(out, { recursive: true, force: true });
  });
});
