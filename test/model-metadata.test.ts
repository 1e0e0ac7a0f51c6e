/**
 * model.json is enough: every stitched model splitfit writes carries `userDefinedMetadata.splitfit`
 * (labels, input, preprocessing), stock tfjs keeps it through a save/load round trip, and
 * `loadPredictor`/`predict` work on model.json + weights.bin alone. With splitfit.json beside it,
 * the two must agree.
 */
import * as tf from '@tensorflow/tfjs';
import { cp, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { metadataPixels } from '../src/output/metadata.js';
import { extractFeatures, loadPredictor, METADATA_KEY, MODEL_METADATA_FORMAT, modelMetadataOf, predict, readModelMetadata, type SplitfitManifest, trainHead } from '../src/index.js';
import { readRecord } from '../src/output/commit.js';
import { makeToyFixture, type ToyFixture } from './helpers/reliability.js';

let root: string;
let fx: ToyFixture;
let out: string;
let manifest: SplitfitManifest;
let images: string[];
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-metadata-'));
  fx = await makeToyFixture(join(root, 'fx'), 4);
  const cache = join(root, 'cache');
  await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache, preprocess: 'symmetric' });
  out = join(root, 'out');
  await trainHead({ cache, out, epochs: 2, learningRate: 0.01 });
  manifest = JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8')) as SplitfitManifest;
  images = await Promise.all(fx.classes.map(async (c) => join(fx.data, c, (await readdir(join(fx.data, c)))[0]!)));
});

/** The model.json + weights.bin of `from`, alone (plus `extra` files) in a new folder. */
async function bare(name: string, from = out, extra: Record<string, string> = {}): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  for (const f of ['model.json', 'weights.bin']) await cp(join(from, f), join(dir, f));
  for (const [f, text] of Object.entries(extra)) await writeFile(join(dir, f), text);
  return dir;
}

describe('model.json metadata', () => {
  it("train-head writes it: what modelMetadataOf(splitfit.json) returns, inside the committed model.json (no separate file)", async () => {
    const json = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as { userDefinedMetadata?: Record<string, unknown> };
    const meta = json.userDefinedMetadata?.[METADATA_KEY];
    expect(meta).toEqual(modelMetadataOf(manifest));
    expect(meta).toEqual({
      format: MODEL_METADATA_FORMAT,
      task: 'classify',
      labels: fx.classes,
      input: { height: 16, width: 16, channels: 3 },
      preprocessing: { pixels: metadataPixels(), preset: 'symmetric' },
    });
    // The head alone takes features, not images: no metadata there.
    const head = JSON.parse(await readFile(join(out, 'head', 'model.json'), 'utf8')) as Record<string, unknown>;
    expect(head['userDefinedMetadata']).toBeUndefined();
    // One commit covers it: the record lists model.json and nothing metadata-like beside it.
    const record = await readRecord(out);
    expect(record!.files.map((f) => f.path).filter((p) => !p.includes('/')).sort()).toEqual(['history.json', 'model.json', 'report.html', 'report.json', 'splitfit.json', 'weights.bin']);
  });

  it('stock tfjs keeps it: loadLayersModel → getUserDefinedMetadata(), and again after model.save', async () => {
    const json = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as tf.io.ModelJSON;
    const weights = await readFile(join(out, 'weights.bin'));
    const load = async (j: tf.io.ModelJSON, w: ArrayBuffer): Promise<tf.LayersModel> =>
      tf.loadLayersModel(tf.io.fromMemory(await tf.io.getModelArtifactsForJSON(j, async (m) => [m.flatMap((g) => g.weights), w])));
    const model = await load(json, weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength));
    expect(readModelMetadata(model.getUserDefinedMetadata(), 'model.json')).toEqual(modelMetadataOf(manifest));
    let saved: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => ((saved = a), { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } })));
    expect((saved!.userDefinedMetadata as Record<string, unknown>)[METADATA_KEY]).toEqual(modelMetadataOf(manifest));
    model.dispose();
  });

  it('loadPredictor and predict() work on model.json + weights.bin alone: labels, preset and input size from the metadata', async () => {
    const dir = await bare('bare');
    const p = await loadPredictor(join(dir, 'model.json'));
    expect(p.labels).toEqual(fx.classes);
    expect(p.preset).toBe('symmetric'); // not the 'unit' default: it came from the metadata
    expect(p.inputSize).toEqual([16, 16]);
    expect(p.metadata?.task).toBe('classify');
    const alone = await predict(dir, images);
    const full = await predict(out, images);
    expect(alone.predictions.map((x) => x.label)).toEqual(full.predictions.map((x) => x.label));
    alone.predictions.forEach((x, i) => {
      expect(Object.keys(x.probabilities)).toEqual(fx.classes);
      for (const l of fx.classes) expect(x.probabilities[l]).toBeCloseTo(full.predictions[i]!.probabilities[l]!, 6);
    });
  });

  it('with splitfit.json beside it, the two must agree: labels, preset or input size differing → SPLITFIT_MODEL_LOAD naming both', async () => {
    const edits: [string, Partial<SplitfitManifest>, RegExp][] = [
      ['labels', { labels: [...fx.classes].reverse() }, /labels/],
      ['preset', { preprocess: 'unit' }, /preprocessing/],
      ['input', { inputSize: [32, 32] }, /input/],
    ];
    for (const [name, edit, field] of edits) {
      const dir = await bare(`disagree-${name}`, out, { 'splitfit.json': JSON.stringify({ ...manifest, ...edit }) });
      const err = await loadPredictor(join(dir, 'model.json')).catch((e: unknown) => e);
      expect(err, name).toMatchObject({ code: 'SPLITFIT_MODEL_LOAD' });
      expect((err as Error).message).toMatch(field);
      expect((err as Error).message).toMatch(/disagree/);
    }
  });

  it('metadata that contradicts the model itself (input size, class count) is refused; malformed metadata names the field', async () => {
    const json = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as { userDefinedMetadata: Record<string, Record<string, unknown>> };
    const variants: [string, Record<string, unknown>, RegExp][] = [
      ['size', { input: { height: 8, width: 8, channels: 3 } }, /says the input is 8x8x3, the model's input layer is 16x16x3/],
      ['classes', { labels: ['a', 'b'] }, /names 2 classes/],
      ['format', { format: 'splitfit-model/0' }, /format/],
      ['preset', { preprocessing: { pixels: 'x', preset: 'vgg' } }, /preprocessing/],
    ];
    for (const [name, edit, match] of variants) {
      const dir = await bare(`bad-${name}`);
      const meta = { ...json.userDefinedMetadata[METADATA_KEY], ...edit };
      await writeFile(join(dir, 'model.json'), JSON.stringify({ ...json, userDefinedMetadata: { [METADATA_KEY]: meta } }));
      const err = await loadPredictor(join(dir, 'model.json')).catch((e: unknown) => e);
      expect(err, name).toMatchObject({ code: 'SPLITFIT_MODEL_LOAD' });
      expect((err as Error).message, name).toMatch(match);
    }
  });

  it('a model without splitfit metadata loads as before (no labels, the default preset)', async () => {
    const p = await loadPredictor(fx.model);
    expect(p.metadata).toBeUndefined();
    expect(p.labels).toBeUndefined();
    expect(p.preset).toBe('unit');
  });
});
