/**
 * Crash safety: `cache-features` killed with SIGKILL at seeded random moments resumes, verifies and
 * ends byte-identical to an uninterrupted run. A few trials here; `npm run crash-trials` runs the full
 * set (see test/crash/kill-trials.ts).
 */
import { mkdir, mkdtemp, readdir, copyFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKillTrials } from './crash/kill-trials.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { compareRawFeatures, makeToyFixture, readRawFeatures } from './helpers/reliability.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-crash-test-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function summary(report: Awaited<ReturnType<typeof runKillTrials>>): string {
  return report.outcomes.map((o) => `trial ${o.trial}: ${o.ok ? 'ok' : o.problems.join('; ')}`).join('\n');
}

describe('kill -9 during cache-features', () => {
  it('toy model: every trial resumes, verifies, and matches the uninterrupted run byte for byte', async () => {
    const report = await runKillTrials({ trials: 4, seed: 7, workDir: join(root, 'toy'), extraArgs: backendArgs() });
    expect(report.failed, summary(report)).toBe(0);
    expect(report.outcomes).toHaveLength(4);
    expect(report.midExtraction, 'at least one kill must land after a committed batch').toBeGreaterThan(0);
    for (const o of report.outcomes.filter((x) => x.killedMidExtraction)) expect(o.resume.skipped).toBeGreaterThan(0);
  });

  it('mobilenet_v2: the same, on the real network', async () => {
    const report = await runKillTrials({ model: 'mobilenet_v2', trials: 2, seed: 3, perClass: 16, workDir: join(root, 'mobilenet'), extraArgs: backendArgs() });
    expect(report.failed, summary(report)).toBe(0);
    expect(report.midExtraction).toBeGreaterThan(0);
  });

  // A resumed run computes the remaining samples in other batches than an uninterrupted one, so its
  // bytes match only if a sample's features do not depend on the batch around it. Through plain
  // `base.predict`, native TensorFlow takes another convolution path for a batch of one (measured:
  // every mobilenet_v2 feature differs, by up to 7e-6); the compiled base that extraction uses does not.
  it('features do not depend on the batch they are computed in (batch of 1 vs batch of 8, mobilenet_v2)', async () => {
    const fx = await makeToyFixture(join(root, 'batch-fx'), 3);
    const data = join(root, 'batch-data');
    const cls = join(data, fx.classes[0]!);
    await mkdir(cls, { recursive: true });
    for (const f of (await readdir(join(fx.data, fx.classes[0]!))).slice(0, 3)) await copyFile(join(fx.data, fx.classes[0]!, f), join(cls, f));
    const caches = [];
    for (const batch of ['1', '8']) {
      const cache = join(root, `batch-${batch}`);
      const r = await runCli(['cache-features', '--model', 'mobilenet_v2', '--data', data, '--cache', cache, '--batch-size', batch, '--json', ...backendArgs()]);
      expect(r.status, r.stderr).toBe(0);
      caches.push(await readRawFeatures(cache));
    }
    expect(compareRawFeatures(caches[1]!, caches[0]!)).toEqual([]);
  });
});
