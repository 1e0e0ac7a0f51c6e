// Deploy anywhere: a model trained by the CLI, loaded by the browser module (dist/browser/splitfit.js)
// in Debian chromium, gives what `splitfit predict` gives in Node on the same image files — real
// images of every kind a user drops, on the cpu and wasm backends — and the example page works.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { serveStatic, type StaticServer } from '../examples/browser/server.js';
import { decodeImage } from '../src/data/decode.js';
import { type Browser, launchBrowser, type PageLog, watchPage } from './helpers/browser.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { writeParityImages } from './helpers/parity-images.js';

const root = join(import.meta.dirname, '..');
/** The bound the issue states for browser vs Node probabilities. */
const PARITY = 1e-3;
/**
 * Images with an embedded ICC profile are colour-converted by each platform's own engine (lcms2 in
 * libvips, skcms in Chromium), which round 1.2 % of values one level apart: measured 1.6e-3. The
 * stated bound for them is wider; the top-1 must still agree.
 */
const ICC_PARITY = 5e-3;
const HAS_ICC = /icc/;

interface NodePrediction {
  file: string;
  label: string;
  probabilities: Record<string, number>;
}
interface BrowserPrediction {
  name: string;
  url: string;
  label: string;
  probabilities: Record<string, number>;
  /** The model's input pixels the browser built, base64. */
  pixels: string;
  ms: number;
}

describe('the browser module predicts what Node predicts', () => {
  let dir: string;
  let model: string;
  let names: string[];
  let node: Map<string, NodePrediction>;
  let nodeUint8: Map<string, NodePrediction>;
  let server: StaticServer;
  let browser: Browser;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-browser-'));
    const data = join(dir, 'emoji');
    await makeEmojiDataset({ out: data, categories: ['Animals & Nature', 'Food & Drink', 'Travel & Places', 'Objects'], perClass: 12, testFraction: 0.25 });
    const cache = join(dir, 'cache');
    model = join(dir, 'model');
    const cached = await runCli(['cache-features', '--model', 'mobilenet_v2', '--boundary', 'out_relu', '--data', join(data, 'train'), '--cache', cache, '--quiet', ...backendArgs()]);
    expect(cached.status, cached.stderr).toBe(0);
    const trained = await runCli(['train-head', '--cache', cache, '--out', model, '--epochs', '8', '--lr', '0.01', '--quiet', ...backendArgs()]);
    expect(trained.status, trained.stderr).toBe(0);
    const images = join(dir, 'images');
    names = await writeParityImages(images);
    const predicted = await runCli(['predict', '--model', model, images, '--json', ...backendArgs()]);
    expect(predicted.status, predicted.stderr).toBe(0);
    const list = predicted.json['predictions'] as NodePrediction[];
    node = new Map(list.map((p) => [p.file.split('/').at(-1)!, p]));
    expect([...node.keys()].sort()).toEqual([...names].sort());
    // The uint8 export of the same model, predicted by Node from model.json alone (its metadata).
    const exported = await runCli(['export', model, '--out', join(dir, 'model-uint8'), '--quantize', 'uint8', ...backendArgs()]);
    expect(exported.status, exported.stderr).toBe(0);
    const predictedUint8 = await runCli(['predict', '--model', join(dir, 'model-uint8'), images, '--json', ...backendArgs()]);
    expect(predictedUint8.status, predictedUint8.stderr).toBe(0);
    nodeUint8 = new Map((predictedUint8.json['predictions'] as NodePrediction[]).map((p) => [p.file.split('/').at(-1)!, p]));
    server = await serveStatic({ '/': join(root, 'examples/browser/page'), '/splitfit/': join(root, 'dist/browser'), '/model/': model, '/model-uint8/': join(dir, 'model-uint8'), '/images/': images, '/harness/': join(root, 'test/browser') });
    browser = await launchBrowser();
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function classifyAll(backend: 'cpu' | 'wasm', modelUrl = '/model/model.json'): Promise<{ results: BrowserPrediction[]; log: PageLog }> {
    const page = await browser.context.newPage();
    const log = watchPage(page);
    await page.goto(`${server.url}/harness/harness.html`);
    await page.waitForFunction('window.harnessReady === true');
    const results = (await page.evaluate(`window.classifyAll('${modelUrl}', '${backend}', ${JSON.stringify(names.map((n) => `/images/${n}`))})`)) as BrowserPrediction[];
    for (const r of results) r.name = r.url.slice('/images/'.length);
    await page.close();
    return { results, log };
  }

  for (const backend of ['cpu', 'wasm'] as const) {
    it(`${backend}: the same top-1 on every image, probabilities within ${PARITY} (${ICC_PARITY} with an ICC profile), no console errors, nothing fetched from elsewhere`, async () => {
      const { results, log } = await classifyAll(backend);
      expect(results).toHaveLength(names.length);
      let worst = 0;
      let worstIcc = 0;
      for (const r of results) {
        const n = node.get(r.name)!;
        expect(r.label, r.name).toBe(n.label);
        let own = 0;
        for (const [label, p] of Object.entries(n.probabilities)) own = Math.max(own, Math.abs(p - r.probabilities[label]!));
        console.log(`  ${backend} ${r.name}: |Δp| ${own.toExponential(2)} (top ${n.label} ${n.probabilities[n.label]!.toFixed(4)})`);
        if (HAS_ICC.test(r.name)) worstIcc = Math.max(worstIcc, own);
        else worst = Math.max(worst, own);
      }
      console.log(`browser ${backend}: max |Δp| ${worst.toExponential(2)} (ICC-tagged: ${worstIcc.toExponential(2)}) over ${results.length} images; ms/image ${results.map((r) => r.ms.toFixed(0)).join(' ')}`);
      expect(worst).toBeLessThanOrEqual(PARITY);
      expect(worstIcc).toBeLessThanOrEqual(ICC_PARITY);
      expect(log.errors).toEqual([]);
      expect(log.requests.filter((u) => !u.startsWith(server.url))).toEqual([]);
    }, 180_000);
  }

  it('a uint8 export: the browser predicts what Node predicts with it, and both stay near the float32 model', async () => {
    const { results, log } = await classifyAll('wasm', '/model-uint8/model.json');
    let parity = 0;
    let drift = 0;
    for (const r of results) {
      const q = nodeUint8.get(r.name)!;
      expect(r.label, r.name).toBe(q.label);
      for (const [label, p] of Object.entries(q.probabilities)) {
        if (!HAS_ICC.test(r.name)) parity = Math.max(parity, Math.abs(p - r.probabilities[label]!));
        drift = Math.max(drift, Math.abs(p - node.get(r.name)!.probabilities[label]!));
      }
    }
    console.log(`uint8 export: browser vs Node max |Δp| ${parity.toExponential(2)}; uint8 vs float32 (Node) max |Δp| ${drift.toFixed(4)}`);
    expect(parity).toBeLessThanOrEqual(PARITY);
    // The export's own bound (docs/BENCHMARKS.md "Quantized export": max |Δp| ≤ 0.018 measured on 120 images).
    expect(drift).toBeLessThan(0.05);
    expect(log.errors).toEqual([]);
  }, 180_000);

  it('the input pixels: byte-identical to Node on PNG (8 and 16 bit, gray, semi-transparent) and JPEG (EXIF-rotated, large); within a level on WebP and an ICC profile (each platform\'s own decoder and colour engine)', async () => {
    const { results } = await classifyAll('wasm');
    for (const r of results) {
      const file = join(dir, 'images', r.name);
      const { readFile } = await import('node:fs/promises');
      const ours = await decodeImage(await readFile(file), { height: 224, width: 224, channels: 3 }, file);
      const theirs = Buffer.from(r.pixels, 'base64');
      expect(theirs.length).toBe(ours.length);
      let diff = 0;
      let max = 0;
      for (let i = 0; i < ours.length; i++) {
        const d = Math.abs(ours[i]! - theirs[i]!);
        diff += d;
        max = Math.max(max, d);
      }
      console.log(`${r.name}: mean |Δpixel| ${(diff / ours.length).toFixed(4)}, max ${max}`);
      const ownDecoder = /\.webp$/.test(r.name) || HAS_ICC.test(r.name);
      expect(max, r.name).toBeLessThanOrEqual(ownDecoder ? 1 : 0);
      expect(diff / ours.length, r.name).toBeLessThan(ownDecoder ? 0.1 : 1e-9);
    }
  }, 180_000);

  it('the trap it avoids: tf.browser.fromPixels + resizeBilinear (alpha dropped, another resize) moves probabilities far beyond the bound', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${server.url}/harness/harness.html`);
    await page.waitForFunction('window.harnessReady === true');
    const naive = (await page.evaluate(`window.classifyNaively('/model/model.json', 'wasm', ${JSON.stringify(names.map((n) => `/images/${n}`))})`)) as { url: string; probabilities: Record<string, number> }[];
    await page.close();
    let agree = 0;
    let worst = 0;
    for (const r of naive) {
      const n = node.get(r.url.slice('/images/'.length))!;
      const label = Object.entries(r.probabilities).sort((a, b) => b[1] - a[1])[0]![0];
      if (label === n.label) agree++;
      for (const [l, p] of Object.entries(n.probabilities)) worst = Math.max(worst, Math.abs(p - r.probabilities[l]!));
    }
    console.log(`naive fromPixels: top-1 agrees on ${agree} of ${naive.length}; max |Δp| ${worst.toFixed(3)}`);
    expect(worst).toBeGreaterThan(100 * PARITY);
  }, 120_000);

  it('a regression model: the browser answers {value, values} in the target\'s units, as `splitfit predict` does', async () => {
    // The same cached images, now with a numeric target (a manifest's `target_score` column): the
    // features are the cached ones (the task is not in the fingerprint).
    const { readdir, writeFile } = await import('node:fs/promises');
    const train = join(dir, 'emoji', 'train');
    const rows: string[] = ['path,target_score'];
    let i = 0;
    for (const cls of (await readdir(train)).sort()) for (const f of (await readdir(join(train, cls))).sort()) rows.push(`${join(train, cls, f)},${(100 + 7 * (i++ % 9)).toFixed(1)}`);
    await writeFile(join(dir, 'scores.csv'), `${rows.join('\n')}\n`);
    const cache = join(dir, 'cache');
    const cached = await runCli(['cache-features', '--model', 'mobilenet_v2', '--boundary', 'out_relu', '--data', join(dir, 'scores.csv'), '--cache', cache, '--json', ...backendArgs()]);
    expect(cached.status, cached.stderr).toBe(0);
    expect(cached.json['extracted']).toBe(0);
    const regress = join(dir, 'model-regress');
    const trained = await runCli(['train-head', '--cache', cache, '--out', regress, '--epochs', '5', '--lr', '0.01', '--quiet', ...backendArgs()]);
    expect(trained.status, trained.stderr).toBe(0);
    const predicted = await runCli(['predict', '--model', regress, join(dir, 'images'), '--json', ...backendArgs()]);
    expect(predicted.status, predicted.stderr).toBe(0);
    const nodeValues = new Map((predicted.json['predictions'] as { file: string; value: number; values: Record<string, number> }[]).map((p) => [p.file.split('/').at(-1)!, p]));
    const regressServer = await serveStatic({ '/splitfit/': join(root, 'dist/browser'), '/model/': regress, '/images/': join(dir, 'images'), '/harness/': join(root, 'test/browser') });
    try {
      const page = await browser.context.newPage();
      await page.goto(`${regressServer.url}/harness/harness.html`);
      await page.waitForFunction('window.harnessReady === true');
      const results = (await page.evaluate(`window.classifyAll('/model/model.json', 'wasm', ${JSON.stringify(names.map((n) => `/images/${n}`))})`)) as { url: string; value: number; values: Record<string, number> }[];
      await page.close();
      let worst = 0;
      for (const r of results) {
        const n = nodeValues.get(r.url.slice('/images/'.length))!;
        expect(Object.keys(r.values)).toEqual(['target_score']);
        // In the target's units (~100–156), not standardised: the scale is folded into the model.
        expect(n.value).toBeGreaterThan(50);
        if (!HAS_ICC.test(r.url)) worst = Math.max(worst, Math.abs(r.value - n.value) / Math.abs(n.value));
      }
      console.log(`regression: browser vs Node max relative |Δvalue| ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(PARITY);
    } finally {
      await regressServer.close();
    }
  }, 180_000);

  it('the example page classifies a chosen file and shows every class', async () => {
    const page: Page = await browser.context.newPage();
    const log = watchPage(page);
    await page.goto(`${server.url}/`);
    await page.waitForFunction("document.getElementById('status').textContent.startsWith('ready')", undefined, { timeout: 60_000 });
    await page.setInputFiles('#file', join(dir, 'images', 'icon-64-dog.png'));
    await page.waitForFunction("document.getElementById('label').textContent !== ''", undefined, { timeout: 60_000 });
    const label = await page.textContent('#label');
    expect(label).toContain(node.get('icon-64-dog.png')!.label);
    expect(await page.locator('#probabilities tr').count()).toBe(4);
    expect(log.errors).toEqual([]);
    await page.close();
  }, 120_000);
});
