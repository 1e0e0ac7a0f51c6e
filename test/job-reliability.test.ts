/**
 * train-head's failure paths through the real CLI: an output folder is replaced as one step and
 * checked by readers, a diverged head is never written, training on nothing is refused, a changed
 * data set is caught before the first epoch, and SIGINT/SIGTERM end with the promised JSON line.
 */
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { trainHead, validateTrainHeadOptions } from '../src/index.js';
import { backendArgs, CLI, runCli } from './helpers/cli.js';
import { exists, makeToyFixture, type ToyFixture } from './helpers/reliability.js';

let root: string;
let fx: ToyFixture;
let cache: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-job-'));
  fx = await makeToyFixture(join(root, 'fx'), 6);
  cache = join(root, 'cache');
  const made = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', cache, '--json', ...backendArgs()]);
  expect(made.status, made.stderr).toBe(0);
});

const train = (out: string, ...extra: string[]) => runCli(['train-head', '--cache', cache, '--out', out, '--epochs', '2', '--json', ...extra, ...backendArgs()]);

describe('train-head output folder', () => {
  it('is committed with a record; predict refuses a folder that mixes two runs instead of printing NaN or dropping a class', async () => {
    const out = join(root, 'mixed');
    expect((await train(out)).status).toBe(0);
    const record = JSON.parse(await readFile(join(out, 'splitfit.commit.json'), 'utf8')) as { files: { path: string }[] };
    expect(record.files.map((f) => f.path).sort()).toEqual(['head/model.json', 'head/weights.bin', 'history.json', 'model.json', 'report.html', 'report.json', 'splitfit.json', 'weights.bin']);
    const image = join(fx.data, fx.classes[0]!, (await readdir(join(fx.data, fx.classes[0]!)))[0]!);
    const ok = await runCli(['predict', '--model', join(out, 'model.json'), image, '--json', ...backendArgs()]);
    expect(ok.status, ok.stderr).toBe(0);
    // Another run's weights.bin (another head size) dropped in, as a kill between renames once left it.
    const other = join(root, 'other');
    expect((await train(other, '--head', 'gap,dense:4:relu,dense:N:softmax')).status).toBe(0);
    await cp(join(other, 'weights.bin'), join(out, 'weights.bin'));
    const bad = await runCli(['predict', '--model', join(out, 'model.json'), image, '--json', ...backendArgs()]);
    expect(bad.status).toBe(1);
    expect(bad.json).toMatchObject({ error: { code: 'SPLITFIT_MODEL_LOAD', message: expect.stringMatching(/weights\.bin.*mixes two runs/) } });
    const evaluated = await runCli(['evaluate', '--model', join(out, 'model.json'), '--data', fx.data, '--json', ...backendArgs()]);
    expect(evaluated.json).toMatchObject({ error: { code: 'SPLITFIT_MODEL_LOAD' } });
  });

  it('checks --out before training: a file where head/ goes is an error that writes nothing', async () => {
    const out = join(root, 'blocked');
    await rm(out, { recursive: true, force: true });
    await cp(join(fx.dir, 'toy'), out, { recursive: true }); // any folder
    await writeFile(join(out, 'head'), 'not a folder');
    const r = await train(out);
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ error: { code: 'SPLITFIT_IO', message: expect.stringMatching(/head exists and is not a folder/) } });
    expect(r.stdout).not.toMatch(/"event":"epoch"/);
    expect(await exists(join(out, '.splitfit-staging'))).toBe(false);
  });
});

describe('numeric failures and empty training', () => {
  it('a diverged head is SPLITFIT_NUMERIC, exit 1, and nothing is written', async () => {
    const out = join(root, 'diverged');
    const r = await train(out, '--lr', '1e308', '--optimizer', 'sgd');
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ error: { code: 'SPLITFIT_NUMERIC', message: expect.stringMatching(/diverged.*smaller/) } });
    expect(await exists(join(out, 'model.json'))).toBe(false);
  });

  it('a validation split that leaves nothing to train on, and class weights that are all 0, are usage errors naming the flag', async () => {
    const split = await train(join(root, 'all-val'), '--validation-split', '0.999');
    expect(split.status).toBe(2);
    expect(split.json).toMatchObject({ error: { code: 'SPLITFIT_USAGE', message: expect.stringMatching(/--validation-split 0\.999 holds out \d+ of \d+ samples and leaves none/) } });
    const zero = await train(join(root, 'zero-w'), '--class-weights', '0,0,0');
    expect(zero.status).toBe(2);
    expect(zero.json).toMatchObject({ error: { code: 'SPLITFIT_USAGE', message: expect.stringMatching(/--class-weights \[0, 0, 0\] give every training sample weight 0/) } });
    // The library says the same in its own words.
    await expect(trainHead({ cache, out: join(root, 'lib'), validationSplit: 0.999 })).rejects.toMatchObject({ code: 'SPLITFIT_USAGE', message: expect.stringMatching(/`validationSplit`/) });
  });

  it('undefined options mean the defaults; wrong types are TypeErrors; absurd --views fail at parse time', async () => {
    // No defaults for these two: undefined means "train-head chooses them" (issue #13).
    const resolved = validateTrainHeadOptions({ out: 'x', epochs: undefined, learningRate: undefined });
    expect([resolved.epochs, resolved.learningRate, resolved.batchSize]).toEqual([undefined, undefined, 32]);
    expect(() => validateTrainHeadOptions({ out: 'x', epochs: '10' as unknown as number })).toThrow(TypeError);
    expect(() => validateTrainHeadOptions({ out: 'x', learningRate: -1 })).toThrow(expect.objectContaining({ code: 'SPLITFIT_USAGE', option: 'learningRate' }));
    const t0 = performance.now();
    const views = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', join(root, 'v'), '--augment', 'flip:h', '--views', '2000000', '--json']);
    expect(views.status).toBe(2);
    expect(views.json).toMatchObject({ error: { code: 'SPLITFIT_USAGE', message: expect.stringMatching(/--views needs an integer from 1 to 1000000/) } });
    expect(performance.now() - t0).toBeLessThan(30_000); // not hours: refused before any work
  });
});

describe('refreshes on a changed data set', () => {
  it('an edited image is caught before the first epoch; the cached generation stays whole and a plain run trains on every sample', async () => {
    const data = join(root, 'editable');
    await cp(fx.data, data, { recursive: true });
    const augCache = join(root, 'aug-cache');
    const made = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', data, '--cache', augCache, '--augment', 'flip:h', '--views', '2', '--json', ...backendArgs()]);
    expect(made.status, made.stderr).toBe(0);
    const victim = join(data, fx.classes[1]!, (await readdir(join(data, fx.classes[1]!)))[0]!);
    await writeFile(victim, Buffer.concat([await readFile(victim), Buffer.from([0])]));
    const r = await runCli(['train-head', '--cache', augCache, '--out', join(root, 'aug-out'), '--epochs', '4', '--refresh-every', '2', '--json', ...backendArgs()]);
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ error: { code: 'SPLITFIT_CACHE_MISMATCH', message: expect.stringMatching(/1 of 18 images .* edited or removed/) } });
    expect(r.stdout).not.toMatch(/"event":"epoch"/);
    const plain = await runCli(['train-head', '--cache', augCache, '--out', join(root, 'aug-plain'), '--epochs', '1', '--json', ...backendArgs()]);
    expect(plain.status, plain.stderr).toBe(0);
    const history = JSON.parse(await readFile(join(root, 'aug-plain', 'history.json'), 'utf8')) as { viewsRead: number[][] };
    expect(history.viewsRead[0]!.reduce((a, b) => a + b, 0)).toBe(18);
  });
});

describe('signals', () => {
  for (const [signal, status] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${signal} during training ends with the SPLITFIT_INTERRUPTED JSON line, exit ${status}, nothing written, cache consistent`, async () => {
      const out = join(root, `sig-${signal}`);
      const child = spawn(process.execPath, [CLI, 'train-head', '--cache', cache, '--out', out, '--epochs', '100000', '--lr', '0.001', '--batch-size', '1', '--json', ...backendArgs()], {
        env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('"event":"epoch"') && !child.killed) child.kill(signal);
      });
      expect(await exited).toBe(status);
      const last = JSON.parse(stdout.trim().split('\n').at(-1)!) as { error: { code: string; message: string } };
      expect(last).toMatchObject({ error: { code: 'SPLITFIT_INTERRUPTED', message: expect.stringMatching(new RegExp(`${signal}.*rerun the same command to resume`)) } });
      expect(await exists(join(out, 'model.json'))).toBe(false);
      const verify = await runCli(['cache', 'verify', '--cache', cache, '--json']);
      expect(verify.json).toMatchObject({ ok: true });
    });
  }
});
