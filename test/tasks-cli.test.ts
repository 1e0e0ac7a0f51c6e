import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeMultiLabelDataset, makeRotationDataset } from '../examples/task-data.js';
import { saveModel } from '../src/index.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { residualToyModel } from './helpers/models.js';

// The whole path through the built CLI on real images (Twemoji rotated, Twemoji composites), with a toy
// CNN saved to disk as the pretrained base. Values are checked against each other: what evaluate reports
// is recomputed from what predict answers on the same files.

interface Manifest {
  task: { task: string; thresholds?: number[]; targetScale?: { mean: number[]; std: number[] } };
  labels: string[];
}

let dir: string;
let model: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'splitfit-tasks-cli-'));
  await saveModel(residualToyModel(), join(dir, 'toy'));
  model = join(dir, 'toy', 'model.json');
});

async function ok(args: string[]): Promise<Record<string, unknown>> {
  const r = await runCli([...args, '--json', ...backendArgs()]);
  expect(r.status, `${args[0]}: ${r.stderr}`).toBe(0);
  return r.json;
}

/** The manifest's rows as [absolute path, field] pairs. */
async function rows(csv: string): Promise<[string, string][]> {
  const [, ...lines] = (await readFile(csv, 'utf8')).trim().split('\n');
  return lines.map((l) => {
    const [path, value] = l.split(',') as [string, string];
    return [join(csv, '..', path), value];
  });
}

describe('regress through the CLI', () => {
  it('cache-features → train-head → predict → evaluate --compare-modes: values in degrees, MAE recomputed from predict, no mode gap', async () => {
    const data = await makeRotationDataset({ out: join(dir, 'rotation'), count: 48, seed: 3 });
    const cache = join(dir, 'cache-reg');
    const out = join(dir, 'reg');
    const cached = await ok(['cache-features', '--model', model, '--boundary', 'block2_add', '--data', data.train, '--cache', cache]);
    expect(cached['total']).toBe(data.trainCount);
    const trained = await ok(['train-head', '--cache', cache, '--out', out, '--epochs', '20', '--lr', '0.01', '--batch-size', '8', '--validation-split', '0.25', '--loss', 'mae']);
    expect(trained['labels']).toEqual(['target_angle']);
    expect(trained['task']).toMatchObject({ task: 'regress', loss: 'mae' });
    const manifest = JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8')) as Manifest;
    expect(manifest.task.task).toBe('regress');
    expect(manifest.task.targetScale!.std[0]).toBeGreaterThan(5); // degrees, uniform in ±45°: σ ≈ 26

    const test = await rows(data.test);
    const predicted = (await ok(['predict', '--model', join(out, 'model.json'), ...test.map(([p]) => p)]))['predictions'] as { file: string; value: number; values: Record<string, number> }[];
    expect(predicted.map((p) => p.file)).toEqual(test.map(([p]) => p));
    for (const p of predicted) {
      expect(Object.keys(p.values)).toEqual(['target_angle']);
      expect(p.values['target_angle']).toBe(p.value);
      // In degrees: near the ±45° range, not standardised units around 0 ± 1.
      expect(Math.abs(p.value)).toBeLessThan(90);
    }
    expect(Math.max(...predicted.map((p) => Math.abs(p.value - manifest.task.targetScale!.mean[0]!)))).toBeGreaterThan(0.5);

    const evaluated = await ok(['evaluate', '--model', join(out, 'model.json'), '--data', data.test, '--compare-modes']);
    const mae = test.reduce((s, [, v], i) => s + Math.abs(predicted[i]!.value - Number(v)), 0) / test.length;
    expect(evaluated['task']).toBe('regress');
    expect((evaluated['regression'] as { mae: number }).mae).toBeCloseTo(mae, 4);
    expect(evaluated['n']).toBe(data.testCount);
    // A splitfit model (base folded, no BN left to drift) shows no gap between the modes.
    const modes = evaluated['regressionModes'] as { flagged: boolean; mseGap: number; rule: string };
    expect(modes.flagged).toBe(false);
    expect(Math.abs(modes.mseGap)).toBeLessThan(1e-3);
    expect(modes.rule).toContain('R² lower by more than 0.1');
  });
});

describe('multilabel through the CLI', () => {
  it('thresholds tuned and applied as stated: predict’s label sets are exactly the labels with p ≥ threshold; evaluate agrees', async () => {
    const data = await makeMultiLabelDataset({ out: join(dir, 'multi'), count: 60, seed: 4 });
    const cache = join(dir, 'cache-ml');
    const out = join(dir, 'ml');
    await ok(['cache-features', '--model', model, '--boundary', 'block2_add', '--data', data.train, '--cache', cache]);
    const trained = await ok(['train-head', '--cache', cache, '--out', out, '--epochs', '15', '--lr', '0.01', '--batch-size', '8', '--validation-split', '0.3', '--tune-threshold', '--pos-weight']);
    expect(trained['labels']).toEqual(data.labels);
    const manifest = JSON.parse(await readFile(join(out, 'splitfit.json'), 'utf8')) as Manifest;
    const thresholds = manifest.task.thresholds!;
    expect(thresholds).toHaveLength(4);
    expect(manifest.task).toMatchObject({ task: 'multilabel', thresholdsTuned: true });

    const test = await rows(data.test);
    const predicted = (await ok(['predict', '--model', join(out, 'model.json'), ...test.map(([p]) => p)]))['predictions'] as { labels: string[]; probabilities: Record<string, number> }[];
    for (const p of predicted) {
      expect(Object.keys(p.probabilities)).toEqual(data.labels);
      expect(p.labels).toEqual(data.labels.filter((l, j) => p.probabilities[l]! >= thresholds[j]!));
    }
    const evaluated = await ok(['evaluate', '--model', join(out, 'model.json'), '--data', data.test, '--compare-modes']);
    const m = evaluated['multilabel'] as { perLabel: { label: string; threshold: number }[]; subsetAccuracy: number; hammingLoss: number; macroAuc: number };
    expect(m.perLabel.map((l) => l.threshold)).toEqual(thresholds);
    // Subset accuracy and Hamming loss recomputed from predict's label sets.
    const truth = test.map(([, v]) => v.split('|').sort());
    const exact = predicted.filter((p, i) => p.labels.join('|') === truth[i]!.join('|')).length / test.length;
    expect(m.subsetAccuracy).toBeCloseTo(exact, 10);
    const wrong = predicted.reduce((s, p, i) => s + data.labels.filter((l) => p.labels.includes(l) !== truth[i]!.includes(l)).length, 0);
    expect(m.hammingLoss).toBeCloseTo(wrong / (test.length * 4), 10);
    expect(m.macroAuc).toBeGreaterThanOrEqual(0);
    const modes = evaluated['multiLabelModes'] as { flagged: string[]; maxAccuracyGap: number };
    expect(modes.flagged).toEqual([]);
    expect(modes.maxAccuracyGap).toBe(0);
  });
});

describe('bad targets and tasks through the CLI', () => {
  it('a NaN target is exit 1 with SPLITFIT_DATA_DECODE naming the row; --task regress on a folder is exit 2', async () => {
    const data = await makeRotationDataset({ out: join(dir, 'bad'), count: 4, seed: 5 });
    const bad = join(dir, 'bad', 'nan.csv');
    const text = await readFile(data.train, 'utf8');
    await writeFile(bad, text.replace(/,[-0-9.]+\n$/, ',NaN\n'));
    const r = await runCli(['cache-features', '--model', model, '--boundary', 'block2_add', '--data', bad, '--cache', join(dir, 'c-bad'), '--json', ...backendArgs()]);
    expect(r.status).toBe(1);
    expect(r.json['error']).toEqual({ code: 'SPLITFIT_DATA_DECODE', message: expect.stringMatching(/nan\.csv line 4: target "target_angle" of .* must be a finite decimal number, got "NaN"/) });
    const folder = await runCli(['cache-features', '--model', model, '--boundary', 'block2_add', '--data', join(dir, 'bad', 'images'), '--task', 'regress', '--cache', join(dir, 'c-bad2'), '--json', ...backendArgs()]);
    expect(folder.status).toBe(2);
    expect((folder.json['error'] as { code: string }).code).toBe('SPLITFIT_USAGE');
  });
});
