/**
 * What the shared pixel pipeline (decode/v2: sharp decodes, splitfit's JS composites and resizes)
 * costs against the pipeline it replaced (decode/v1: libvips flatten + lanczos3 `fill` resize), side
 * by side in one run:
 * - decode CPU ms per image on 64×64 Twemoji icons → 224², 28×28 Fashion-MNIST-sized gray rasters →
 *   224², and large 1800×1350 JPEGs → 224² (one image at a time, sharp on one thread: CPU time, not
 *   wall time, so the load of the machine matters little);
 * - held-out accuracy of the same linear probe (bench/linear-probe.ts) on MobileNetV2 `out_relu`
 *   features pooled, on the Twemoji task of `npm run example:emoji`, with each pipeline; and how
 *   many held-out top-1 answers the two pipelines' probes disagree on.
 *
 *   npx tsx bench/pixel-pipeline.ts [--per-class 100]
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { resolveBackend } from '../src/backend/resolve.js';
import { decodeImage } from '../src/data/decode.js';
import { preprocess } from '../src/data/preprocess.js';
import { loadModel } from '../src/model/io.js';
import { splitBase } from '../src/model/split.js';
import type { FeatureSet } from '../src/train/feature-set.js';
import { intFlag } from './args.js';
import { linearProbe } from './linear-probe.js';

const { values } = parseArgs({ options: { 'per-class': { type: 'string' } } });
const perClass = intFlag('per-class', values['per-class'], 100);
const target = { height: 224, width: 224, channels: 3 } as const;

/** decode/v1, as it was: libvips composites on white and resamples (lanczos3, `fill`). */
async function decodeV1(bytes: Buffer | { raw: Uint8Array; width: number; height: number; channels: 1 | 3 }): Promise<Uint8Array> {
  const image = Buffer.isBuffer(bytes) ? sharp(bytes).autoOrient() : sharp(bytes.raw, { raw: { width: bytes.width, height: bytes.height, channels: bytes.channels } });
  const { data } = await image.flatten({ background: '#ffffff' }).toColourspace('srgb').resize(224, 224, { fit: 'fill' }).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}
const decodeV2 = (bytes: Buffer | { raw: Uint8Array; width: number; height: number; channels: 1 | 3 }): Promise<Uint8Array> => decodeImage(bytes, target, 'bench');

type Input = Buffer | { raw: Uint8Array; width: number; height: number; channels: 1 | 3 };

async function cpuMsPerImage(decode: (b: Input) => Promise<Uint8Array>, inputs: Input[]): Promise<number> {
  for (const b of inputs.slice(0, 3)) await decode(b); // warm-up
  const start = process.cpuUsage();
  for (const b of inputs) await decode(b);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000 / inputs.length;
}

const backend = await resolveBackend('auto');
const dir = await mkdtemp(join(tmpdir(), 'splitfit-pixels-'));
try {
  const data = join(dir, 'emoji');
  const counts = await makeEmojiDataset({ out: data, categories: ['Animals & Nature', 'Food & Drink', 'Travel & Places', 'Smileys & Emotion'], perClass, testFraction: 0.3, seed: 0 });
  const list = async (split: string): Promise<{ file: string; label: number }[]> => {
    const out: { file: string; label: number }[] = [];
    for (const [label, cls] of counts.classes.entries()) for (const f of (await readdir(join(data, split, cls))).sort()) out.push({ file: join(data, split, cls, f), label });
    return out;
  };
  const train = await list('train');
  const test = await list('test');

  // Decode speed.
  const icons = await Promise.all(train.slice(0, 200).map((s) => readFile(s.file)));
  const grays: Input[] = Array.from({ length: 200 }, (_, i) => ({ raw: Uint8Array.from({ length: 28 * 28 }, (_, j) => (i * 31 + j * 7) & 255), width: 28, height: 28, channels: 1 as const }));
  const sheet = join(import.meta.dirname, '..', 'node_modules/emoji-datasource-twitter/img/twitter/sheets/64.png');
  const photos = await Promise.all(
    Array.from({ length: 12 }, (_, i) => sharp(sheet, { limitInputPixels: false }).extract({ left: 100 + i * 150, top: 100 + i * 100, width: 1800, height: 1350 }).flatten({ background: '#ffffff' }).jpeg({ quality: 90 }).toBuffer()),
  );
  console.log(`backend ${backend}; load ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`);
  console.log('decode CPU ms/image (one at a time)        v1 (libvips resize)   v2 (shared JS)   v2/v1');
  for (const [name, inputs] of [
    ['64×64 RGBA PNG icon → 224²', icons],
    ['28×28 gray raster → 224²', grays],
    ['1800×1350 JPEG → 224²', photos],
  ] as const) {
    const v1 = await cpuMsPerImage(decodeV1, inputs as Input[]);
    const v2 = await cpuMsPerImage(decodeV2, inputs as Input[]);
    console.log(`  ${name.padEnd(40)} ${v1.toFixed(2).padStart(10)} ${v2.toFixed(2).padStart(16)} ${(v2 / v1).toFixed(2).padStart(10)}`);
  }

  // Held-out accuracy of the same probe on each pipeline's features.
  const model = await loadModel('mobilenet_v2');
  const { base } = splitBase(model, 'out_relu');
  const features = async (samples: { file: string; label: number }[], decode: (b: Input) => Promise<Uint8Array>): Promise<FeatureSet> => {
    const x = new Float32Array(samples.length * 1280);
    for (let i = 0; i < samples.length; i += 32) {
      const chunk = samples.slice(i, i + 32);
      const pixels = await Promise.all(chunk.map(async (s) => preprocess(await decode(await readFile(s.file)), 3, 'unit')));
      const batch = new Float32Array(chunk.length * 224 * 224 * 3);
      pixels.forEach((p, j) => batch.set(p, j * p.length));
      const pooled = tf.tidy(() => tf.mean(base.predict(tf.tensor4d(batch, [chunk.length, 224, 224, 3])) as tf.Tensor4D, [1, 2]));
      x.set(await pooled.data(), i * 1280);
      pooled.dispose();
    }
    return { ids: samples.map((s) => s.file), labels: samples.map((s) => s.label), x, featureShape: [1280], views: 1 };
  };
  const answers: number[][] = [];
  console.log(`\nheld-out accuracy, Twemoji ${counts.classes.length} classes, ${train.length} train / ${test.length} test, MobileNetV2 out_relu pooled, linear probe`);
  for (const [name, decode] of [
    ['v1 (libvips lanczos3)', decodeV1],
    ['v2 (shared triangle)', decodeV2],
  ] as const) {
    const probe = linearProbe(await features(train, decode), counts.classes.length, 0);
    const held = await features(test, decode);
    console.log(`  ${name.padEnd(24)} ${probe.accuracy(held).toFixed(3)}  (λ ${probe.lambda})`);
    answers.push(probe.predict(held));
    probe.dispose();
  }
  const disagree = answers[0]!.filter((a, i) => a !== answers[1]![i]).length;
  console.log(`  top-1 answers that differ between the two: ${disagree} of ${test.length}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
