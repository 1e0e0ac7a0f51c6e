/**
 * Hostile models and head specs (issue #11, items 8, 11, 12): every row must give a coded error
 * (never SPLITFIT_INTERNAL, never a hang), name the field or layer, and leave the disk as it was.
 * Families: cycles and broken references, path traversal, absurd sizes, non-finite numbers,
 * wrong-type JSON, special files. The library rows run in-process (loadModel / parseHeadSpec /
 * buildHead); the CLI rows run the built CLI with a kill timer, since a hang there is the bug.
 */
import * as tf from '@tensorflow/tfjs';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHead, type BuildHeadOptions, type ErrorCode, isSplitfitError, loadModel, parseHeadSpec, saveModel } from '../src/index.js';
import { checkHeadSize, MAX_HEAD_PARAMS, MAX_UNITS } from '../src/model/head-spec.js';
import { bundledModelArtifacts } from '../src/model/bundled.js';
import { backendArgs, type CliResult, runCli } from './helpers/cli.js';
import { diffSnapshots, exists, makeToyFixture, snapshotCache, splitfitStderr, stackLines, type ToyFixture } from './helpers/reliability.js';
import { expectNoTensorLeak } from './helpers/tensors.js';

/** model.json as the rows edit it: arbitrary JSON, since each row breaks a different part of it. */
type Json = any;

let root: string;
let fx: ToyFixture;
let goodJson: Json;
let goodWeights: Buffer;
/** A cache of the fixture, for the train-head rows. */
let cache: string;
const M = {} as Record<string, string>;

/** Writes a copy of the toy model as `models/<name>/model.json` after `edit`; returns the model.json path. */
async function variant(name: string, edit: (json: Json) => Json, weights: Buffer | null = goodWeights): Promise<string> {
  const dir = join(root, 'models', name);
  await mkdir(dir, { recursive: true });
  const edited = edit(structuredClone(goodJson));
  await writeFile(join(dir, 'model.json'), typeof edited === 'string' ? edited : JSON.stringify(edited));
  if (weights !== null) await writeFile(join(dir, 'weights.bin'), weights);
  return join(dir, 'model.json');
}

const layers = (j: Json): Json[] => j.modelTopology.config.layers;
const layer = (j: Json, name: string): Json => layers(j).find((l: Json) => l.name === name);
const firstWeight = (j: Json): Json => j.weightsManifest[0].weights[0];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-hostile-'));
  fx = await makeToyFixture(join(root, 'fx'), 4);
  goodJson = JSON.parse(await readFile(fx.model, 'utf8')) as Json;
  goodWeights = await readFile(join(fx.dir, 'toy', 'weights.bin'));
  cache = join(root, 'cache');
  const made = await runCliTimed(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', cache, '--json', ...backendArgs()]);
  expect(made.status, made.stderr).toBe(0);

  // cycles and broken references
  M['cycle'] = await variant('cycle', (j) => {
    layer(j, 'stem').inbound_nodes = [[['block1_add', 0, 0, {}]]];
    return j;
  });
  M['selfLoop'] = await variant('self-loop', (j) => {
    layer(j, 'block2_bn').inbound_nodes = [[['block2_bn', 0, 0, {}]]];
    return j;
  });
  M['missingInbound'] = await variant('missing-inbound', (j) => {
    layer(j, 'block1_conv').inbound_nodes = [[['stem_rel', 0, 0, {}]]];
    return j;
  });
  M['duplicateName'] = await variant('duplicate-name', (j) => {
    layer(j, 'block2_conv').name = 'block1_conv';
    return j;
  });
  M['nodeIndex'] = await variant('node-index', (j) => {
    layer(j, 'stem_bn').inbound_nodes = [[['stem', 3, 0, {}]]];
    return j;
  });
  M['missingOutputLayer'] = await variant('missing-output-layer', (j) => {
    j.modelTopology.config.output_layers = [['classifer', 0, 0]];
    return j;
  });
  M['inboundNotArray'] = await variant('inbound-not-array', (j) => {
    layer(j, 'stem').inbound_nodes = { 0: 'image' };
    return j;
  });
  // path traversal: secret.bin has exactly the weights' size, so only the folder check can refuse it
  await writeFile(join(root, 'models', 'secret.bin'), goodWeights);
  M['dotdot'] = await variant(
    'dotdot',
    (j) => {
      j.weightsManifest[0].paths = ['../secret.bin'];
      return j;
    },
    null,
  );
  M['absolute'] = await variant(
    'absolute',
    (j) => {
      j.weightsManifest[0].paths = [join(root, 'models', 'secret.bin')];
      return j;
    },
    null,
  );
  M['symlinkOut'] = await variant('symlink-out', (j) => j, null);
  await symlink(join(root, 'models', 'secret.bin'), join(root, 'models', 'symlink-out', 'weights.bin'));
  // absurd sizes: a truncated shard, a shard with a second run's bytes appended, huge or broken shapes
  M['truncated'] = await variant('truncated', (j) => j, goodWeights.subarray(0, goodWeights.length - 100));
  M['appended'] = await variant('appended', (j) => j, Buffer.concat([goodWeights, goodWeights.subarray(0, 48)]));
  M['hugeShape'] = await variant('huge-shape', (j) => {
    firstWeight(j).shape = [1_000_000, 1_000_000, 1_000_000];
    return j;
  });
  M['negativeShape'] = await variant('negative-shape', (j) => {
    firstWeight(j).shape = [3, 3, -3, 8];
    return j;
  });
  M['fractionalShape'] = await variant('fractional-shape', (j) => {
    firstWeight(j).shape = [3, 3, 1.5, 8];
    return j;
  });
  M['badDtype'] = await variant('bad-dtype', (j) => {
    firstWeight(j).dtype = 'float64';
    return j;
  });
  M['badQuantization'] = await variant('bad-quantization', (j) => {
    firstWeight(j).quantization = { dtype: 'int4', scale: 1, min: 0 };
    return j;
  });
  // non-finite numbers (JSON.parse reads 1e400 as Infinity)
  M['infiniteDim'] = await variant('infinite-dim', (j) => JSON.stringify(j).replace('"shape":[3,3,3,8]', '"shape":[3,3,1e400,8]'));
  M['infiniteScale'] = await variant('infinite-scale', (j) => {
    firstWeight(j).quantization = { dtype: 'uint8', scale: '__INF__', min: 0 };
    return JSON.stringify(j).replace('"__INF__"', '1e400');
  });
  // wrong-type JSON
  M['null'] = await variant('null', () => 'null');
  M['number'] = await variant('number', () => '42');
  M['array'] = await variant('array', () => '[1, 2]');
  M['noTopology'] = await variant('no-topology', (j) => ({ ...j, modelTopology: undefined }));
  M['topologyString'] = await variant('topology-string', (j) => ({ ...j, modelTopology: 'Model' }));
  M['manifestObject'] = await variant('manifest-object', (j) => ({ ...j, weightsManifest: j.weightsManifest[0] }));
  M['pathsString'] = await variant('paths-string', (j) => {
    j.weightsManifest[0].paths = 'weights.bin';
    return j;
  });
  M['pathNumber'] = await variant('path-number', (j) => {
    j.weightsManifest[0].paths = [7];
    return j;
  });
  M['layersObject'] = await variant('layers-object', (j) => {
    j.modelTopology.config.layers = {};
    return j;
  });
  M['weightNull'] = await variant('weight-null', (j) => {
    j.weightsManifest[0].weights[2] = null;
    return j;
  });
  M['refString'] = await variant('ref-string', (j) => {
    layer(j, 'stem').inbound_nodes = [['image']];
    return j;
  });
  M['noInputLayers'] = await variant('no-input-layers', (j) => {
    delete j.modelTopology.config.input_layers;
    return j;
  });
  M['classNameNumber'] = await variant('class-name-number', (j) => {
    layer(j, 'pool').class_name = 7;
    return j;
  });
  M['deepNesting'] = await variant('deep-nesting', (j) => {
    let inner: Json = { class_name: 'Model', name: 'm0', config: { name: 'm0', layers: [], input_layers: [], output_layers: [] }, inbound_nodes: [] };
    for (let i = 1; i <= 40; i++) inner = { class_name: 'Model', name: `m${i}`, config: { name: `m${i}`, layers: [inner], input_layers: [], output_layers: [] }, inbound_nodes: [] };
    j.modelTopology.config.layers.push(inner);
    return j;
  });
  M['noPaths'] = await variant('no-paths', (j) => {
    j.weightsManifest[0].paths = [];
    return j;
  });
  M['emptyManifest'] = await variant('empty-manifest', (j) => ({ ...j, weightsManifest: [] }));
  // layer configs tfjs itself refuses (its error is wrapped, never SPLITFIT_INTERNAL)
  M['hugeUnits'] = await variant('huge-units', (j) => {
    layer(j, 'classifier').config.units = 1e9;
    return j;
  });
  M['negativeFilters'] = await variant('negative-filters', (j) => {
    layer(j, 'stem').config.filters = -2;
    return j;
  });
  M['layerConfigNull'] = await variant('layer-config-null', (j) => {
    layer(j, 'block1_bn').config = null;
    return j;
  });
  // special files
  M['fifoShard'] = await variant('fifo-shard', (j) => j, null);
  execFileSync('mkfifo', [join(root, 'models', 'fifo-shard', 'weights.bin')]);
  M['devZeroJson'] = join(root, 'models', 'dev-zero', 'model.json');
  await mkdir(join(root, 'models', 'dev-zero'));
  await symlink('/dev/zero', M['devZeroJson']);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface ModelRow {
  name: string;
  model: () => string;
  /** Texts the message must contain: the field or layer, and what was expected. */
  mentions: string[];
}

const modelRows: ModelRow[] = [
  { name: 'inbound_nodes cycle (stem reads block1_add)', model: () => M['cycle']!, mentions: ['cycle', '"stem"', '"block1_add"'] },
  { name: 'a layer reading its own output', model: () => M['selfLoop']!, mentions: ['cycle', '"block2_bn" → "block2_bn"'] },
  { name: 'inbound layer that does not exist', model: () => M['missingInbound']!, mentions: ['"stem_rel"', 'not in the model', 'did you mean "stem_relu"', 'block1_conv'] },
  { name: 'duplicate layer name', model: () => M['duplicateName']!, mentions: ['"block1_conv"', 'unique'] },
  { name: 'inbound node index that never exists', model: () => M['nodeIndex']!, mentions: ['node 3 of layer "stem"', 'has 1 node'] },
  { name: 'output layer that does not exist', model: () => M['missingOutputLayer']!, mentions: ['output_layers[0][0]', '"classifer"', 'did you mean "classifier"'] },
  { name: 'inbound_nodes that is not an array', model: () => M['inboundNotArray']!, mentions: ['inbound_nodes', 'expected an array'] },
  { name: 'shard path ../secret.bin', model: () => M['dotdot']!, mentions: ['"../secret.bin"', 'outside the model\'s folder'] },
  { name: 'absolute shard path', model: () => M['absolute']!, mentions: ['secret.bin', 'absolute path'] },
  { name: 'shard symlink pointing outside the folder', model: () => M['symlinkOut']!, mentions: ['"weights.bin"', 'outside the model\'s folder'] },
  { name: 'truncated weights.bin', model: () => M['truncated']!, mentions: ['weights.bin', 'holds 5960 bytes', 'declares 6060 bytes'] },
  { name: 'weights.bin with bytes of another run appended', model: () => M['appended']!, mentions: ['weights.bin', 'holds 6108 bytes', 'declares 6060 bytes'] },
  { name: 'an inbound reference that is a string', model: () => M['refString']!, mentions: ['layers[1].inbound_nodes[0][0]', 'a string ("image")', 'expected an array'] },
  { name: 'input_layers missing', model: () => M['noInputLayers']!, mentions: ['modelTopology.config.input_layers is missing'] },
  { name: 'a layer class_name that is a number', model: () => M['classNameNumber']!, mentions: ['class_name', '(layer "pool") is a number (7)'] },
  { name: 'models nested 41 deep', model: () => M['deepNesting']!, mentions: ['nests models more than 32 deep'] },
  { name: 'a weight group that lists no shard', model: () => M['noPaths']!, mentions: ['lists no weight shard', 'holds 0 bytes', 'declares 6060 bytes'] },
  { name: 'weight shape of 10^18 elements', model: () => M['hugeShape']!, mentions: ['weightsManifest[0].weights[0].shape', '"stem/kernel"', 'at most 2147483647'] },
  { name: 'negative weight dimension', model: () => M['negativeShape']!, mentions: ['weights[0].shape[2]', 'a number (-3)', 'non-negative integer'] },
  { name: 'fractional weight dimension', model: () => M['fractionalShape']!, mentions: ['weights[0].shape[2]', 'a number (1.5)'] },
  { name: 'unknown weight dtype', model: () => M['badDtype']!, mentions: ['weights[0].dtype', '"float64"', 'float32, int32, bool, complex64'] },
  { name: 'unknown quantization dtype', model: () => M['badQuantization']!, mentions: ['quantization.dtype', '"int4"', 'uint8, uint16, float16'] },
  { name: 'infinite weight dimension (1e400)', model: () => M['infiniteDim']!, mentions: ['weights[0].shape[2]', 'Infinity'] },
  { name: 'infinite quantization scale (1e400)', model: () => M['infiniteScale']!, mentions: ['quantization.scale', 'finite number'] },
  { name: 'model.json that is null', model: () => M['null']!, mentions: ['the document is null', 'JSON object'] },
  { name: 'model.json that is a number', model: () => M['number']!, mentions: ['a number (42)'] },
  { name: 'model.json that is an array', model: () => M['array']!, mentions: ['an array', 'JSON object'] },
  { name: 'modelTopology missing', model: () => M['noTopology']!, mentions: ['modelTopology is missing'] },
  { name: 'modelTopology a string', model: () => M['topologyString']!, mentions: ['modelTopology is a string ("Model")'] },
  { name: 'weightsManifest an object', model: () => M['manifestObject']!, mentions: ['weightsManifest is an object', 'expected an array'] },
  { name: 'weightsManifest paths a string', model: () => M['pathsString']!, mentions: ['weightsManifest[0].paths', 'a string ("weights.bin")'] },
  { name: 'weightsManifest path a number', model: () => M['pathNumber']!, mentions: ['weightsManifest[0].paths[0]', 'a number (7)'] },
  { name: 'layers an object', model: () => M['layersObject']!, mentions: ['config.layers', 'expected an array'] },
  { name: 'weight entry null', model: () => M['weightNull']!, mentions: ['weightsManifest[0].weights[2] is null'] },
  { name: 'weight shard that is a FIFO', model: () => M['fifoShard']!, mentions: ['weights.bin', 'not a regular file'] },
  { name: 'model.json that is a symlink to /dev/zero', model: () => M['devZeroJson']!, mentions: ['model.json', 'not a regular file'] },
];

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('loadModel refuses hostile model.json files with SPLITFIT_MODEL_LOAD naming the field', () => {
  it('the fixture itself loads (the rows break one thing each)', async () => {
    const model = await loadModel(fx.model);
    expect(model.layers.map((l) => l.name)).toContain('block1_add');
    expect(goodWeights.length).toBe(6060);
    model.dispose();
  });

  it.each(modelRows.map((r) => [r.name, r] as const))('%s', async (_name, row) => {
    // Refused before tfjs built anything: no tensors were made.
    const err = await expectNoTensorLeak(() => caught(loadModel(row.model())));
    expect(isSplitfitError(err, 'SPLITFIT_MODEL_LOAD'), String(err)).toBe(true);
    const msg = (err as Error).message;
    expect(msg).not.toContain('\n');
    for (const m of row.mentions) expect(msg).toContain(m);
  });

  it.each([
    ['a Dense layer of 10^9 units (an 8·10^9-element kernel)', () => M['hugeUnits']!, 'Invalid typed array length'],
    ['a Conv2D layer with -2 filters', () => M['negativeFilters']!, 'filters'],
    ['a layer whose config is null', () => M['layerConfigNull']!, 'cannot build a LayersModel'],
    ['an empty weightsManifest for a model with weights', () => M['emptyManifest']!, 'stem'],
  ])('layer config tfjs refuses: %s → SPLITFIT_MODEL_LOAD wrapping its error', async (_name, model, mention) => {
    const err = await caught(loadModel(model()));
    expect(isSplitfitError(err, 'SPLITFIT_MODEL_LOAD'), String(err)).toBe(true);
    expect((err as Error).message).toContain('cannot build a LayersModel from');
    expect((err as Error).message).toContain(mention);
  });

  it('no false alarm on a real Keras export: the bundled MobileNetV2 (uint8-quantized) written out as a folder loads', async () => {
    const art = await bundledModelArtifacts('mobilenet_v2');
    const dir = join(root, 'models', 'mobilenet');
    await mkdir(dir);
    await writeFile(join(dir, 'model.json'), JSON.stringify({ modelTopology: art.modelTopology, weightsManifest: [{ paths: ['w.bin'], weights: art.weightSpecs }] }));
    await writeFile(join(dir, 'w.bin'), new Uint8Array(art.weightData as ArrayBuffer));
    expect(art.weightSpecs!.some((w) => w.quantization?.dtype === 'uint8')).toBe(true);
    const model = await loadModel(join(dir, 'model.json'));
    expect(model.getLayer('out_relu')).toBeDefined();
    expect(model.layers.length).toBeGreaterThan(150);
    model.dispose();
  });

  it('Sequential and nested models load; a duplicate name inside a nested model is refused, naming its path', async () => {
    const seq = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2, name: 's1' }), tf.layers.dense({ units: 2, name: 's2' })] });
    const x = tf.input({ shape: [3], name: 'outer_x' });
    const nested = tf.model({ inputs: x, outputs: seq.apply(x) as tf.SymbolicTensor, name: 'outer' });
    for (const [name, m] of [['seq', seq], ['nested', nested]] as const) {
      await saveModel(m, join(root, 'models', name));
      const loaded = await loadModel(join(root, 'models', name, 'model.json'));
      expect(loaded.countParams()).toBe(m.countParams());
      loaded.dispose();
    }
    const path = join(root, 'models', 'nested', 'model.json');
    const json = JSON.parse(await readFile(path, 'utf8')) as Json;
    const inside = json.modelTopology.config.layers.find((l: Json) => l.class_name === 'Sequential');
    inside.config.layers[1].config.name = 's1';
    await writeFile(path, JSON.stringify(json));
    const err = await caught(loadModel(path));
    expect(isSplitfitError(err, 'SPLITFIT_MODEL_LOAD'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/modelTopology\.config\.layers\[1\]\.config\.layers\[1\]\.config\.name is "s1", the name of .*layers\[0\] too; layer names must be unique/);
    seq.dispose();
  });

  it('shared layers form a cycle of layers but not of nodes: A(B(A(B(x)))) still loads', async () => {
    const x = tf.input({ shape: [4], name: 'x' });
    const a = tf.layers.dense({ units: 4, name: 'a' });
    const b = tf.layers.dense({ units: 4, name: 'b' });
    const y = a.apply(b.apply(a.apply(b.apply(x)))) as tf.SymbolicTensor;
    const model = tf.model({ inputs: x, outputs: y, name: 'shared' });
    const dir = join(root, 'models', 'shared');
    await saveModel(model, dir);
    const loaded = await loadModel(join(dir, 'model.json'));
    const input = tf.ones([1, 4]);
    const [p, q] = [model.predict(input) as tf.Tensor, loaded.predict(input) as tf.Tensor];
    expect(Array.from(q.dataSync())).toEqual(Array.from(p.dataSync()));
    tf.dispose([input, p, q]);
    model.dispose();
    loaded.dispose();
  });

  it('a multi-shard group whose shards together hold the declared bytes loads; one byte short names both shards', async () => {
    const dir = join(root, 'models', 'two-shards');
    const split = 4000;
    await variant('two-shards', (j) => {
      j.weightsManifest[0].paths = ['group1-shard1of2.bin', 'group1-shard2of2.bin'];
      return j;
    }, null);
    await writeFile(join(dir, 'group1-shard1of2.bin'), goodWeights.subarray(0, split));
    await writeFile(join(dir, 'group1-shard2of2.bin'), goodWeights.subarray(split));
    const model = await loadModel(join(dir, 'model.json'));
    expect(model.getLayer('stem').getWeights()[0]!.shape).toEqual([3, 3, 3, 8]);
    model.dispose();
    await truncate(join(dir, 'group1-shard2of2.bin'), goodWeights.length - split - 1);
    const err = await caught(loadModel(join(dir, 'model.json')));
    expect(isSplitfitError(err, 'SPLITFIT_MODEL_LOAD')).toBe(true);
    expect((err as Error).message).toContain('group1-shard1of2.bin, group1-shard2of2.bin hold together 6059 bytes');
  });

  it('a symlinked shard that stays inside the folder is followed', async () => {
    const dir = join(root, 'models', 'symlink-in');
    await variant('symlink-in', (j) => j, null);
    await mkdir(join(dir, 'store'));
    await writeFile(join(dir, 'store', 'real.bin'), goodWeights);
    await symlink(join(dir, 'store', 'real.bin'), join(dir, 'weights.bin'));
    const model = await loadModel(join(dir, 'model.json'));
    expect(model.layers).toHaveLength(goodJson.modelTopology.config.layers.length);
    model.dispose();
  });
});

describe('head specs: every way to break the grammar is SPLITFIT_HEAD_SPEC with the bound in the message', () => {
  const bad: [spec: string, mention: string][] = [
    ['gap,dense:1e9:relu,dense:N:softmax', 'dense:1e9:relu'],
    ['gap,dense:1000000000:relu,dense:N:softmax', `more than ${MAX_UNITS}`],
    ['gap,dense:65537,dense:N:softmax', `more than ${MAX_UNITS}`],
    ['gap,dense:0,dense:N:softmax', 'positive integer'],
    ['gap,dense:-5,dense:N:softmax', 'positive integer'],
    ['gap,dense:2.5,dense:N:softmax', 'positive integer'],
    ['gap,dense:0x10,dense:N:softmax', 'positive integer'],
    ['gap,dense:Infinity,dense:N:softmax', 'positive integer'],
    ['gap,dense:NaN,dense:N:softmax', 'positive integer'],
    ['gap,dense:,dense:N:softmax', 'positive integer'],
    ['gap,dense', 'positive integer'],
    ['gap,dense:N:softmax:extra', 'positive integer'],
    ['gap,dense:N:ReLU', 'did you mean "relu"'],
    ['gap,dense:N:__proto__', 'unknown activation "__proto__"'],
    ['gap,dropout:,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,dropout,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,dropout:NaN,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,dropout:Infinity,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,dropout:1,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,dropout:-0.1,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,dropout:0x0,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,dropout:1e400,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,dropout:0.5:0.1,dense:N:softmax', 'rate in [0, 1)'],
    ['gap,gap:1,dense:N:softmax', '`gap` takes no arguments'],
    ['gap,bn:momentum,dense:N:softmax', '`bn` takes no arguments'],
    ['gap,original:block2_add,dense:N:softmax', 'must come first'],
    ['original:,dense:N:softmax', 'one layer name'],
    ['original:a:b', 'one layer name'],
    ['Dense:N:softmax', 'did you mean "dense"'],
    ['constructor', 'unknown element "constructor"'],
    ['', 'empty element'],
    [',', 'empty element'],
    ['gap,,dense:N:softmax', 'empty element'],
    [Array.from({ length: 65 }, () => 'bn').join(','), '65 elements; a head has at most 64'],
    ['bn,'.repeat(2000), 'at most 4096 are read'],
  ];
  it.each(bad)('%s', (spec, mention) => {
    let err: unknown;
    try {
      parseHeadSpec(spec);
    } catch (e) {
      err = e;
    }
    expect(isSplitfitError(err, 'SPLITFIT_HEAD_SPEC'), String(err)).toBe(true);
    expect((err as Error).message).toContain(mention);
    expect((err as Error).message).not.toContain('\n');
  });

  it('valid edge cases still parse to the same ops', () => {
    expect(parseHeadSpec(' gap , dropout:.5 , dense:65536 , dense:N:softmax ')).toEqual([
      { kind: 'gap' },
      { kind: 'dropout', rate: 0.5 },
      { kind: 'dense', units: 65536, activation: 'linear' },
      { kind: 'dense', units: 'N', activation: 'softmax' },
    ]);
    expect(parseHeadSpec('dropout:0,dropout:5e-1,dropout:0.999')).toEqual([0, 0.5, 0.999].map((rate) => ({ kind: 'dropout', rate })));
  });

  it('the parameter bound counts dense kernels, biases, BN and N: exactly 2^28 passes, more does not', () => {
    // dense: inputs·units + units = 16383·16384 + 16384 = 2^28 exactly.
    expect(16383 * 16384 + 16384).toBe(MAX_HEAD_PARAMS);
    expect(() => checkHeadSize(parseHeadSpec('dense:16384'), [16383], 2, 's')).not.toThrow();
    expect(() => checkHeadSize(parseHeadSpec('dense:16384'), [16384], 2, 's')).toThrow(/268451840 parameters, more than 268435456 \(2\^28\)/);
    // bn adds 4 per channel (gamma, beta, moving mean and variance).
    expect(() => checkHeadSize(parseHeadSpec('dense:16383,bn'), [16384], 2, 's')).toThrow(/268500987 parameters/);
    // N is the number of classes; flatten multiplies the feature map out.
    expect(() => checkHeadSize(parseHeadSpec('dense:N'), [16383], 16384, 's')).not.toThrow();
    expect(() => checkHeadSize(parseHeadSpec('dense:N'), [16383], 16385, 's')).toThrow(/parameters, more than/);
    expect(() => checkHeadSize(parseHeadSpec('flatten,dense:N'), [127, 129, 1], 16384, 's')).not.toThrow();
    expect(() => checkHeadSize(parseHeadSpec('flatten,dense:N'), [128, 128, 1], 16384, 's')).toThrow(/parameters, more than/);
    // gap keeps only the channels, so the same map is small behind it.
    expect(() => checkHeadSize(parseHeadSpec('gap,dense:65536,dense:N'), [512, 512, 64], 10, 's')).not.toThrow();
  });

  it('buildHead refuses a 4·10^9-parameter head before allocating it, and library ops out of range', async () => {
    const source = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 2, name: 'only' })] });
    const attempts: [NonNullable<BuildHeadOptions['spec']>, string][] = [
      ['flatten,dense:65536,dense:65536,dense:N:softmax', 'more than 268435456 (2^28)'],
      [[{ kind: 'dense', units: 1e9, activation: 'relu' }, { kind: 'dense', units: 'N', activation: 'softmax' }], `[1, ${MAX_UNITS}]`],
      [[{ kind: 'dropout', rate: Number.NaN }, { kind: 'dense', units: 'N', activation: 'softmax' }], 'dropout rate NaN'],
      [[{ kind: 'dense', units: 'N', activation: 'nope' as 'relu' }], 'unknown activation "nope"'],
    ];
    await expectNoTensorLeak(async () => {
      for (const [spec, mention] of attempts) {
        let err: unknown;
        try {
          await buildHead(source, 'only', [8, 8, 64], { spec, numClasses: 3 });
        } catch (e) {
          err = e;
        }
        expect(isSplitfitError(err, 'SPLITFIT_HEAD_SPEC'), String(err)).toBe(true);
        expect((err as Error).message).toContain(mention);
      }
    });
    // A wrong-typed op is a programmer mistake.
    await expect(buildHead(source, 'only', [4], { spec: [null as never], numClasses: 3 })).rejects.toBeInstanceOf(TypeError);
    source.dispose();
  });
});

/** The built CLI with a kill timer: a hang is what several rows test for, so it must end the row, not the suite. */
async function runCliTimed(args: string[], timeoutMs = 30_000): Promise<CliResult & { timedOut: boolean }> {
  const r = await runCli(args, { timeoutMs });
  return { ...r, timedOut: r.signal !== null };
}

/** Every file under a folder with its size, for "nothing written" checks. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath, e.name);
    out.push(`${p}:${e.isFile() ? (await stat(p)).size : e.isSymbolicLink() ? 'link' : e.isFIFO() ? 'fifo' : 'dir'}`);
  }
  return out.sort();
}

interface CliRow {
  name: string;
  /** `out` is a fresh path the command must not create (a cache or an output folder). */
  args: (out: string) => string[];
  code: ErrorCode;
  mentions: string[];
}

const cf = (model: () => string) => (out: string) => ['cache-features', '--model', model(), '--boundary', fx.boundary, '--data', fx.data, '--cache', out];
const inspect = (model: () => string) => () => ['inspect', model()];
const th = (head: string) => (out: string) => ['train-head', '--cache', cache, '--out', out, '--epochs', '1', '--head', head];

const cliRows: CliRow[] = [
  { name: 'inspect: inbound_nodes cycle', args: inspect(() => M['cycle']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['cycle', '"stem"'] },
  { name: 'cache-features: inbound_nodes cycle', args: cf(() => M['cycle']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['cycle', '"block1_add"'] },
  { name: 'inspect: missing inbound layer', args: inspect(() => M['missingInbound']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['"stem_rel"', 'did you mean "stem_relu"'] },
  { name: 'cache-features: inbound node index that never exists', args: cf(() => M['nodeIndex']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['node 3 of layer "stem"'] },
  { name: 'inspect: duplicate layer name', args: inspect(() => M['duplicateName']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['"block1_conv"', 'unique'] },
  { name: 'cache-features: shard ../secret.bin', args: cf(() => M['dotdot']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['"../secret.bin"', 'outside'] },
  { name: 'cache-features: shard symlink outside the folder', args: cf(() => M['symlinkOut']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['outside'] },
  { name: 'cache-features: truncated weights.bin', args: cf(() => M['truncated']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['weights.bin', '5960', '6060'] },
  { name: 'inspect: weight shape of 10^18 elements', args: inspect(() => M['hugeShape']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['weights[0].shape', 'at most'] },
  { name: 'inspect: infinite dimension', args: inspect(() => M['infiniteDim']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['Infinity'] },
  { name: 'inspect: model.json null', args: inspect(() => M['null']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['the document is null'] },
  { name: 'cache-features: model.json an array', args: cf(() => M['array']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['an array'] },
  { name: 'cache-features: weightsManifest an object', args: cf(() => M['manifestObject']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['weightsManifest is an object'] },
  { name: 'inspect: weight shard a FIFO', args: inspect(() => M['fifoShard']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['not a regular file'] },
  { name: 'inspect: model.json a symlink to /dev/zero', args: inspect(() => M['devZeroJson']!), code: 'SPLITFIT_MODEL_LOAD', mentions: ['not a regular file'] },
  { name: 'train-head: --head dense:1e9', args: th('gap,dense:1e9:relu,dense:N:softmax'), code: 'SPLITFIT_HEAD_SPEC', mentions: ['dense:1e9:relu'] },
  { name: 'train-head: --head dense:1000000000', args: th('gap,dense:1000000000:relu,dense:N:softmax'), code: 'SPLITFIT_HEAD_SPEC', mentions: ['65536'] },
  { name: 'train-head: --head of 4·10^9 parameters', args: th('flatten,dense:65536,dense:65536,dense:N:softmax'), code: 'SPLITFIT_HEAD_SPEC', mentions: ['268435456 (2^28)'] },
  { name: 'train-head: --head dropout:NaN', args: th('gap,dropout:NaN,dense:N:softmax'), code: 'SPLITFIT_HEAD_SPEC', mentions: ['dropout:NaN', '[0, 1)'] },
  { name: 'train-head: --head dropout: (empty rate)', args: th('gap,dropout:,dense:N:softmax'), code: 'SPLITFIT_HEAD_SPEC', mentions: ['[0, 1)'] },
];

describe('hostile models and heads through the CLI: coded error, one line, no hang, nothing written', () => {
  it.each(cliRows.map((r, i) => [r.name, r, i] as const))('%s', async (_name, row, i) => {
    const out = join(root, 'outs', String(i));
    const models = await listing(join(root, 'models'));
    const cacheBefore = await snapshotCache(cache);
    const args = row.args(out);
    const r = await runCliTimed([...args, '--json', ...(args[0] === 'inspect' ? [] : backendArgs())]);
    expect(r.timedOut, 'the command hung').toBe(false);
    expect(r.status, r.stderr).toBe(1);
    expect(r.json).toEqual({ error: { code: row.code, message: expect.any(String) } });
    const lines = splitfitStderr(r.stderr);
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^splitfit: ${row.code}: \\S`));
    expect(stackLines(r.stderr)).toEqual([]);
    for (const m of row.mentions) expect(lines[0]).toContain(m);
    // Nothing written: no cache or output folder, the model folders and the cache as they were.
    expect(await exists(out), out).toBe(false);
    expect(await listing(join(root, 'models'))).toEqual(models);
    expect(diffSnapshots(cacheBefore, await snapshotCache(cache))).toEqual([]);
  });

  it('the fixture through the same CLI works, so the rows fail for their one defect', async () => {
    const r = await runCliTimed(['inspect', fx.model, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect((r.json['layers'] as { name: string }[]).map((l) => l.name)).toContain('block1_add');
  });
});
