import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeMultiLabelDataset, makeRotationDataset } from '../examples/task-data.js';
import type { ReportData, TaskReportSection } from '../src/report/data.js';
import { evaluate, extractFeatures, openDataSource, saveModel, trainHead } from '../src/index.js';
import { type Browser, launchBrowser, watchPage } from './helpers/browser.js';
import { residualToyModel } from './helpers/models.js';

// train-head's report.html of a regression run (scatter of predicted vs true) and of a multi-label run
// (per-label table and chart), from real images, drawn in Debian's chromium.
let dir: string;
let browser: Browser;
const outs: Record<'reg' | 'ml', string> = { reg: '', ml: '' };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'splitfit-tasks-report-'));
  await saveModel(residualToyModel(), join(dir, 'toy'));
  const model = join(dir, 'toy', 'model.json');
  const rot = await makeRotationDataset({ out: join(dir, 'rot'), count: 40, seed: 6 });
  const multi = await makeMultiLabelDataset({ out: join(dir, 'multi'), count: 40, seed: 6 });
  for (const [key, data] of [['reg', rot.train], ['ml', multi.train]] as const) {
    const cache = join(dir, `cache-${key}`);
    await extractFeatures({ model, boundary: 'block2_add', data, cache });
    outs[key] = join(dir, key);
    await trainHead({ cache, out: outs[key], epochs: 5, learningRate: 1e-2, batchSize: 8, validationSplit: 0.25, seed: 0 });
  }
  browser = await launchBrowser();
}, 120_000);
afterAll(() => browser?.close());

async function reportOf(out: string): Promise<ReportData> {
  return JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as ReportData;
}

async function chartsOf(out: string): Promise<{ charts: [string, number, number][]; errors: string[] }> {
  const page = await browser.context.newPage();
  const log = watchPage(page);
  await page.goto(pathToFileURL(join(out, 'report.html')).href);
  await page.waitForFunction(() => (globalThis as unknown as { splitfitReport?: { ready?: boolean } }).splitfitReport?.ready === true, null, { timeout: 20_000 });
  const charts = await page.evaluate(() => {
    const w = globalThis as unknown as {
      Chart: { getChart(id: string): { data: { datasets: unknown[] }; getDatasetMeta(i: number): { data: unknown[] } } };
      splitfitReport: { charts: { id: string; expectedMarks: number }[] };
    };
    return w.splitfitReport.charts.map(({ id, expectedMarks }) => {
      const c = w.Chart.getChart(id);
      return [id, c.data.datasets.reduce((n: number, _d, i) => n + c.getDatasetMeta(i).data.length, 0), expectedMarks] as [string, number, number];
    });
  });
  await page.close();
  return { charts, errors: log.errors };
}

describe('report.html of multilabel and regression runs', () => {
  it('regress: the validation section holds every held-out sample in degrees, and its MAE is theirs', async () => {
    const data = await reportOf(outs.reg);
    expect(data.evaluations).toEqual([]);
    expect(data.notes).toEqual([]);
    expect(data.title).toContain('1 targets');
    const section = data.tasks![0]! as Extract<TaskReportSection, { task: 'regress' }>;
    expect(section.task).toBe('regress');
    const p = section.points[0]!;
    expect(p.name).toBe('target_angle');
    expect(p.actual).toHaveLength(section.n);
    // The true values are the manifest's angles (undone from standardisation), not standardised units.
    const angles = new Set((await openDataSource(join(dir, 'rot', 'train.csv'))).samples.map((s) => s.values![0]!.toFixed(2)));
    for (const a of p.actual) expect(angles.has(a.toFixed(2))).toBe(true);
    const mae = p.actual.reduce((s, a, i) => s + Math.abs(a - p.predicted[i]!), 0) / p.actual.length;
    expect(section.metrics.mae).toBeCloseTo(mae, 6);
    const { charts, errors } = await chartsOf(outs.reg);
    expect(errors).toEqual([]);
    // Every point drawn: n samples plus the two ends of the diagonal.
    expect(charts.find(([id]) => id === 'chart-scatter-0-0')).toEqual(['chart-scatter-0-0', section.n + 2, section.n + 2]);
  });

  it('evaluate --report adds a held-out section beside the validation one, and a rerun replaces it', async () => {
    const report = join(outs.reg, 'report.html');
    const r = await evaluate({ model: join(outs.reg, 'model.json'), data: join(dir, 'rot', 'test.csv'), report });
    expect(r.report).toBe(report);
    await evaluate({ model: join(outs.reg, 'model.json'), data: join(dir, 'rot', 'test.csv'), report });
    const data = await reportOf(outs.reg);
    expect(data.tasks!.map((t) => [t.kind, t.title])).toEqual([
      ['validation', 'Validation: predicted vs true'],
      ['evaluate', 'Evaluation: predicted vs true'],
    ]);
    const held = data.tasks![1]! as Extract<TaskReportSection, { task: 'regress' }>;
    expect(held.n).toBe(r.n);
    expect(held.metrics.mae).toBeCloseTo(r.regression!.mae, 10);
    const { charts, errors } = await chartsOf(outs.reg);
    expect(errors).toEqual([]);
    expect(charts.find(([id]) => id === 'chart-scatter-1-0')).toEqual(['chart-scatter-1-0', r.n + 2, r.n + 2]);
  });

  it('multilabel: the per-label section has each label’s threshold and scores, drawn as bars', async () => {
    const data = await reportOf(outs.ml);
    const section = data.tasks![0]! as Extract<TaskReportSection, { task: 'multilabel' }>;
    expect(section.task).toBe('multilabel');
    expect(section.metrics.perLabel.map((l) => l.threshold)).toEqual([0.5, 0.5, 0.5, 0.5]);
    expect(section.metrics.perLabel.reduce((s, l) => s + (1 - l.accuracy), 0) / 4).toBeCloseTo(section.metrics.hammingLoss, 10);
    const { charts, errors } = await chartsOf(outs.ml);
    expect(errors).toEqual([]);
    expect(charts.find(([id]) => id === 'chart-labels-0')).toEqual(['chart-labels-0', 8, 8]);
  });
});
