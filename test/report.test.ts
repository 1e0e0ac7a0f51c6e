import { mkdir, mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEmojiDataset } from '../examples/emoji-categories/dataset.js';
import { extractFeatures } from '../src/extract/extract.js';
import { trainHead } from '../src/job/train-head.js';
import { commitFiles, readRecord, sha256, verifyFolder } from '../src/output/commit.js';
import { regenerateReport } from '../src/report/write.js';
import type { EvaluationSection, ReportData } from '../src/report/data.js';
import { embedJson, REPORT_CSP } from '../src/report/html.js';
import { classReport, worstMisclassified } from '../src/train/class-metrics.js';
import { rocAuc } from '../src/train/metrics.js';
import { type Browser, launchBrowser, watchPage } from './helpers/browser.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { makeToyFixture } from './helpers/reliability.js';

describe('per-class metrics', () => {
  // 3 classes, 6 samples: rows are softmax outputs, labels the truth.
  const probs = new Float32Array([0.8, 0.1, 0.1, 0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.5, 0.4, 0.1, 0.1, 0.2, 0.7, 0.3, 0.6, 0.1]);
  const actual = [0, 0, 1, 1, 2, 2];
  const labels = ['a', 'b', 'c'];

  it('confusion matrix, precision, recall, F1, support and one-vs-rest AUC', () => {
    const r = classReport(probs, actual, labels);
    // predicted: 0, 0, 1, 0, 2, 1
    expect(r.confusion).toEqual([
      [2, 0, 0],
      [1, 1, 0],
      [0, 1, 1],
    ]);
    const [a, b, c] = r.perClass;
    expect(a).toMatchObject({ label: 'a', precision: 2 / 3, recall: 1, support: 2 });
    expect(a!.f1).toBeCloseTo(0.8, 12);
    expect(b).toMatchObject({ label: 'b', precision: 0.5, recall: 0.5, f1: 0.5, support: 2 });
    expect(c).toMatchObject({ label: 'c', precision: 1, recall: 0.5, support: 2 });
    expect(c!.f1).toBeCloseTo(2 / 3, 12);
    for (const [j, m] of r.perClass.entries()) {
      const scores = actual.map((_, i) => probs[i * 3 + j]!);
      expect(m.auc).toBe(rocAuc(scores, actual.map((y) => y === j)));
    }
    expect(r.macro.recall).toBeCloseTo((1 + 0.5 + 0.5) / 3, 12);
  });

  it('a class never predicted has precision 0 (not NaN); a class absent from the data has no AUC', () => {
    const r = classReport(new Float32Array([0.9, 0.1, 0, 0.8, 0.2, 0]), [0, 1], ['a', 'b', 'c']);
    expect(r.perClass[1]).toMatchObject({ precision: 0, recall: 0, f1: 0, support: 1 });
    expect(r.perClass[2]).toMatchObject({ precision: 0, recall: 0, f1: 0, support: 0 });
    expect(r.perClass[2]!.auc).toBeUndefined();
  });

  it('worst misclassified: most confident wrong answers first', () => {
    const w = worstMisclassified(probs, actual, 3, 10);
    expect(w.map((m) => m.index)).toEqual([5, 3]);
    expect(w[0]).toMatchObject({ actual: 2, predicted: 1, trueProbability: expect.closeTo(0.1, 6) as unknown as number });
    expect(w[0]!.confidence).toBeCloseTo(0.6, 6);
    expect(worstMisclassified(probs, actual, 3, 1)).toHaveLength(1);
  });

  it('embedded JSON cannot close its script element', () => {
    const text = embedJson({ file: '</script><script>alert(1)</script>', note: '<!--' });
    expect(text).not.toContain('<');
    expect(JSON.parse(text)).toEqual({ file: '</script><script>alert(1)</script>', note: '<!--' });
  });
});

// The README's job on real Twemoji PNGs with the real mobilenet_v2, then the report in Debian's chromium.
describe('train-head report, evaluate --report, splitfit report, in a real browser', () => {
  let dir: string;
  let data: string;
  let out: string;
  let train: Awaited<ReturnType<typeof runCli>>;
  let evaluated: Awaited<ReturnType<typeof runCli>>;
  let browser: Browser;
  const epochs = 20;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splitfit-report-'));
    data = join(dir, 'emoji');
    out = join(dir, 'model');
    await makeEmojiDataset({ out: data, categories: ['Animals & Nature', 'Food & Drink', 'Travel & Places'], perClass: 24, testFraction: 0.25 });
    const cache = join(dir, 'cache');
    const cached = await runCli(['cache-features', '--model', 'mobilenet_v2', '--boundary', 'out_relu', '--data', join(data, 'train'), '--cache', cache, '--quiet', ...backendArgs()]);
    expect(cached.status, cached.stderr).toBe(0);
    // Human output into a pipe, as in CI.
    train = await runCli(['train-head', '--cache', cache, '--out', out, '--epochs', String(epochs), '--lr', '0.003', '--validation-split', '0.25', ...backendArgs()]);
    expect(train.status, train.stderr).toBe(0);
    evaluated = await runCli(['evaluate', '--model', join(out, 'model.json'), '--data', join(data, 'test'), '--report', join(out, 'report.html'), '--compare-modes', '--json', ...backendArgs()]);
    expect(evaluated.status, evaluated.stderr).toBe(0);
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
  });

  const report = async (): Promise<ReportData> => JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as ReportData;

  it('train-head in a pipe: one plain line per epoch with validation metrics, no internal fields, the report named', () => {
    expect(train.stderr).not.toMatch(/[\r\x1b]/);
    const lines = train.stderr.split('\n').filter((l) => l.startsWith('epoch '));
    expect(lines).toHaveLength(epochs);
    for (const l of lines) expect(l).toMatch(/^epoch +\d+\/20 {2}loss \d\.\d{4} acc \d\.\d{4} \| val loss \d\.\d{4} acc \d\.\d{4} auc \d\.\d{4} {2}\d/);
    expect(train.stderr + train.stdout).not.toMatch(/generation \d|viewsRead/);
    expect(train.stdout).toContain(`report: ${join(out, 'report.html')}`);
  });

  it('the validation section is the internal split, scored by the saved head: its accuracy is the last epoch valAcc', async () => {
    const r = await report();
    const history = JSON.parse(await readFile(join(out, 'history.json'), 'utf8')) as { valAcc: number[]; valLoss: number[] };
    const manifest = JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8')) as { training: { validationSamples: number }; labels: string[] };
    const v = r.evaluations.find((e) => e.kind === 'validation')!;
    expect(v.title).toBe('Validation (internal split)');
    expect(v.on).toMatch(/^the internal validation split: 25 % of the cached training data held out with seed 0 \(14 samples/);
    expect(v.n).toBe(manifest.training.validationSamples);
    expect(v.labels).toEqual(manifest.labels);
    const total = v.confusion.flat().reduce((s, c) => s + c, 0);
    const trace = v.confusion.reduce((s, row, i) => s + row[i]!, 0);
    expect(total).toBe(v.n);
    expect(trace / total).toBeCloseTo(history.valAcc.at(-1)!, 6);
    expect(v.accuracy).toBeCloseTo(history.valAcc.at(-1)!, 6);
    expect(v.loss).toBeCloseTo(history.valLoss.at(-1)!, 4);
    expect(v.perClass.map((m) => m.support)).toEqual(v.confusion.map((row) => row.reduce((s, c) => s + c, 0)));
    expect(v.misclassified).toBe(total - trace);
    expect(v.worst).toHaveLength(Math.min(12, v.misclassified));
    for (const s of v.worst) {
      expect(s.thumbnail).toMatch(/^data:image\/png;base64,/);
      expect((await stat(s.file)).isFile()).toBe(true);
      expect(s.file.startsWith(join(data, 'train'))).toBe(true);
    }
    expect(r.history!.loss).toHaveLength(epochs);
    expect(r.history!.bestEpoch).toBe(history.valLoss.indexOf(Math.min(...history.valLoss)) + 1);
  });

  it('evaluate --json gains confusion and perClass, and --report adds its section to the committed report, model kept', async () => {
    const j = evaluated.json as { n: number; accuracy: number; labels: string[]; confusion: number[][]; perClass: { support: number; recall: number }[]; report: string };
    expect(j.n).toBe(18);
    expect(j.confusion.flat().reduce((s, c) => s + c, 0)).toBe(18);
    expect(j.confusion.reduce((s, row, i) => s + row[i]!, 0) / 18).toBeCloseTo(j.accuracy, 12);
    expect(j.perClass.map((m) => m.support)).toEqual([6, 6, 6]);
    j.perClass.forEach((m, i) => expect(m.recall).toBeCloseTo(j.confusion[i]![i]! / 6, 12));
    expect(j.report).toBe(join(out, 'report.html'));
    const r = await report();
    expect(r.evaluations.map((e) => e.kind)).toEqual(['validation', 'evaluate']);
    const e = r.evaluations[1]!;
    expect(e.confusion).toEqual(j.confusion);
    expect(e.on).toBe(`the data ${resolve(data, 'test')} (18 labeled samples)`);
    expect(e.modes?.verdict).toMatch(/agree|scores higher/);
    // One commit: every file verifies, and the model files are the ones train-head wrote.
    const record = (await verifyFolder(out))!;
    expect(record.files.map((f) => f.path).sort()).toEqual(['head/model.json', 'head/weights.bin', 'history.json', 'model.json', 'report.html', 'report.json', 'splitfit.json', 'weights.bin']);
    expect(record.files.find((f) => f.path === 'weights.bin')!.sha256).toBe(sha256(await readFile(join(out, 'weights.bin'))));
  });

  it('splitfit report <out> renders the same file again from report.json and keeps the commit valid', async () => {
    const before = await readFile(join(out, 'report.html'));
    const modelBefore = (await readRecord(out))!.files.find((f) => f.path === 'weights.bin')!;
    const again = await runCli(['report', out, '--json']);
    expect(again.status, again.stderr).toBe(0);
    expect(again.json).toMatchObject({ file: join(out, 'report.html'), as: 'committed', sections: ['Validation (internal split)', 'Evaluation'] });
    expect(sha256(await readFile(join(out, 'report.html')))).toBe(sha256(before));
    expect((await verifyFolder(out))!.files.find((f) => f.path === 'weights.bin')).toEqual(modelBefore);
    const notAFolder = await runCli(['report', join(dir, 'nowhere')]);
    expect(notAFolder.status).toBe(2);
    expect(notAFolder.stderr).toMatch(/^splitfit: SPLITFIT_USAGE: .*nowhere is not a train-head output folder/m);
  });

  it('in chromium: no console errors, no request but the file, every chart has as many marks as its data', async () => {
    const r = await report();
    const html = await readFile(join(out, 'report.html'), 'utf8');
    expect(html).toContain(`content="${REPORT_CSP}"`);
    const page = await browser.context.newPage();
    const log = watchPage(page);
    const url = pathToFileURL(join(out, 'report.html')).href;
    await page.goto(url);
    await page.waitForFunction(() => (globalThis as unknown as { splitfitReport?: { ready?: boolean } }).splitfitReport?.ready === true, null, { timeout: 20_000 });
    expect(log.errors).toEqual([]);
    expect(log.requests).toEqual([url]);

    const k = r.evaluations[0]!.labels.length;
    const charts = await page.evaluate(() => {
      interface El { x: number; y: number; width?: number; height?: number; $context?: { raw?: unknown } }
      interface ChartLike {
        data: { datasets: { data: unknown[] }[] };
        getDatasetMeta(i: number): { data: El[] };
        chartArea: { left: number; right: number; top: number; bottom: number };
        canvas: { width: number; height: number; getContext(t: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } };
      }
      const w = globalThis as unknown as { Chart: { getChart(id: string): ChartLike }; splitfitReport: { charts: { id: string; type: string }[] } };
      return w.splitfitReport.charts.map(({ id, type }) => {
        const c = w.Chart.getChart(id);
        const marks = c.data.datasets.flatMap((_, i) => c.getDatasetMeta(i).data);
        const a = c.chartArea;
        const inside = marks.every((m) => Number.isFinite(m.x) && Number.isFinite(m.y) && m.x >= a.left - 1 && m.x <= a.right + 1 && m.y >= a.top - 1 && m.y <= a.bottom + 1);
        const px = c.canvas.getContext('2d').getImageData(0, 0, c.canvas.width, c.canvas.height).data;
        let painted = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i]! > 0) painted++;
        const cells = type === 'matrix' ? (c.data.datasets[0]!.data as { x: string; y: string; v: number }[]) : [];
        const sized = type === 'matrix' ? marks.every((m) => (m.width ?? 0) > 1 && (m.height ?? 0) > 1) : true;
        return { id, type, marks: marks.length, inside, painted, cells, sized };
      });
    });
    const h = r.history!;
    const expected = new Map<string, number>([
      ['chart-loss', epochs * 2],
      ['chart-accuracy', epochs * 3], // train acc, val acc, val AUC
      ['chart-confusion-0', k * k],
      ['chart-classes-0', k * 4], // precision, recall, F1, AUC per class
      ['chart-confusion-1', k * k],
      ['chart-classes-1', k * 4],
    ]);
    expect(h.valAuc).toHaveLength(epochs);
    expect(charts.map((c) => c.id)).toEqual([...expected.keys()]);
    for (const c of charts) {
      expect(c.marks, c.id).toBe(expected.get(c.id));
      expect(c.inside, c.id).toBe(true);
      expect(c.sized, c.id).toBe(true);
      expect(c.painted, c.id).toBeGreaterThan(1000);
    }
    // The matrix the browser draws is the one evaluate printed.
    const evaluateJson = evaluated.json as { labels: string[]; confusion: number[][] };
    const drawn = charts.find((c) => c.id === 'chart-confusion-1')!.cells;
    const matrix = evaluateJson.labels.map((actual) => evaluateJson.labels.map((predicted) => drawn.find((d) => d.y === actual && d.x === predicted)!.v));
    expect(matrix).toEqual(evaluateJson.confusion);
    const validation: EvaluationSection = r.evaluations[0]!;
    const drawnVal = charts.find((c) => c.id === 'chart-confusion-0')!.cells;
    expect(validation.labels.map((a) => validation.labels.map((p) => drawnVal.find((d) => d.y === a && d.x === p)!.v))).toEqual(validation.confusion);
    // Thumbnails are real images in the page (decoded, 64×64).
    const images = await page.$$eval('.worst img', (els) => (els as unknown as { naturalWidth: number; naturalHeight: number }[]).map((i) => [i.naturalWidth, i.naturalHeight]));
    expect(images.length).toBe(r.evaluations.reduce((n, e) => n + e.worst.length, 0));
    for (const size of images) expect(size).toEqual([64, 64]);

    // The screenshot for the README: docs/report.png when asked, a temporary file otherwise.
    const shot = process.env['SPLITFIT_UPDATE_SCREENSHOT'] === '1' ? join(import.meta.dirname, '..', 'docs', 'report.png') : join(dir, 'report.png');
    await mkdir(join(shot, '..'), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    const meta = await sharp(shot).metadata();
    expect(meta.width).toBe(1280);
    expect(meta.height).toBeGreaterThan(1500);
    await page.close();
  });

  it('evaluate --report elsewhere writes a standalone report with the folder curves and both sections', async () => {
    const file = join(dir, 'standalone', 'eval.html');
    await mkdir(join(dir, 'standalone'));
    const before = await readFile(join(out, 'report.html'));
    const r = await runCli(['evaluate', '--model', join(out, 'model.json'), '--data', join(data, 'test'), '--report', file, '--json', ...backendArgs()]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json['report']).toBe(file);
    const html = await readFile(file, 'utf8');
    const embedded = JSON.parse(/<script type="application\/json" id="report-data">(.*?)<\/script>/s.exec(html)![1]!) as ReportData;
    expect(embedded.evaluations.map((e) => e.kind)).toEqual(['validation', 'evaluate']);
    expect(embedded.history!.loss).toHaveLength(epochs);
    expect(embedded.evaluations[1]!.confusion).toEqual(r.json['confusion']);
    // The model folder is not touched.
    expect(sha256(await readFile(join(out, 'report.html')))).toBe(sha256(before));
    expect((await stat(file)).size).toBe(Buffer.byteLength(html));
    // A report into a folder that does not exist fails before the model runs, in one coded line.
    const missing = await runCli(['evaluate', '--model', join(out, 'model.json'), '--data', join(data, 'test'), '--report', join(dir, 'no-such', 'r.html'), '--json', ...backendArgs()]);
    expect(missing.status).toBe(1);
    expect(missing.json).toEqual({ error: { code: 'SPLITFIT_IO', message: `report file ${join(dir, 'no-such', 'r.html')}: its folder ${join(dir, 'no-such')} does not exist; create it or write the report elsewhere` } });
    expect(missing.stdout.trim().split('\n')).toHaveLength(1);
  });
});

describe('a run without validation data, and a folder written before reports', () => {
  it('says why there is no confusion matrix; splitfit report rebuilds report.html from history.json and splitfit.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'splitfit-report-none-'));
    const fx = await makeToyFixture(dir, 6);
    const cache = join(dir, 'cache');
    await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache });
    const out = join(dir, 'out');
    await trainHead({ cache, out, epochs: 4, batchSize: 8 });
    const data = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as ReportData;
    expect(data.evaluations).toEqual([]);
    expect(data.notes).toHaveLength(1);
    expect(data.notes[0]).toMatch(/^No validation data: .*--validation-split 0\.2.*splitfit evaluate --model <out>\/model\.json --data <held-out> --report <out>\/report\.html/);
    expect(data.history).toMatchObject({ bestBy: 'loss', savedEpoch: 4 });

    // A folder committed before reports existed: same model files, no report.
    const record = (await readRecord(out))!;
    await commitFiles(out, new Map(), { keep: record.files.map((f) => f.path).filter((p) => !p.startsWith('report.')) });
    expect((await readRecord(out))!.files.map((f) => f.path)).not.toContain('report.html');
    const again = await regenerateReport(out);
    expect(again).toEqual({ file: join(out, 'report.html'), as: 'committed', sections: [] });
    expect((await verifyFolder(out))!.files.map((f) => f.path).sort()).toEqual(record.files.map((f) => f.path).sort());
    const rebuilt = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as ReportData;
    expect(rebuilt.history!.loss).toEqual(data.history!.loss);

    const browser = await launchBrowser();
    try {
      const page = await browser.context.newPage();
      const log = watchPage(page);
      await page.goto(pathToFileURL(join(out, 'report.html')).href);
      await page.waitForFunction(() => (globalThis as unknown as { splitfitReport?: { ready?: boolean } }).splitfitReport?.ready === true, null, { timeout: 20_000 });
      expect(log.errors).toEqual([]);
      const charts = await page.evaluate(() => {
        const w = globalThis as unknown as { Chart: { getChart(id: string): { data: { datasets: unknown[] }; getDatasetMeta(i: number): { data: unknown[] } } }; splitfitReport: { charts: { id: string }[] } };
        return w.splitfitReport.charts.map(({ id }) => {
          const c = w.Chart.getChart(id);
          return [id, c.data.datasets.reduce((n: number, _d, i) => n + c.getDatasetMeta(i).data.length, 0)];
        });
      });
      expect(charts).toEqual([
        ['chart-loss', 4],
        ['chart-accuracy', 4],
      ]);
      // Rebuilt from history + manifest, which say the run had no validation: the same note.
      expect(await page.locator('.note').allTextContents()).toEqual(data.notes);
    } finally {
      await browser.close();
    }
  });
});
