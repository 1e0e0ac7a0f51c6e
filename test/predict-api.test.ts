/** The library's one-call predict() gives what `splitfit predict --json` prints, file for file. */
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { extractFeatures, predict, trainHead } from '../src/index.js';
import { backendArgs, runCli } from './helpers/cli.js';
import { makeToyFixture, type ToyFixture } from './helpers/reliability.js';

let root: string;
let fx: ToyFixture;
let model: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitfit-predict-'));
  fx = await makeToyFixture(join(root, 'fx'), 4);
  const cache = join(root, 'cache');
  await extractFeatures({ model: fx.model, boundary: fx.boundary, data: fx.data, cache });
  await trainHead({ cache, out: join(root, 'out'), epochs: 2, learningRate: 0.01 });
  model = join(root, 'out', 'model.json');
});

describe('predict()', () => {
  it('returns the CLI --json result shape and values for files and folders', async () => {
    const klass = fx.classes[0]!;
    const file = join(fx.data, klass, (await readdir(join(fx.data, klass)))[0]!);
    const lib = await predict(model, [file, join(fx.data, fx.classes[1]!)]);
    const cli = await runCli(['predict', '--model', model, file, join(fx.data, fx.classes[1]!), '--json', ...backendArgs()]);
    expect(cli.status, cli.stderr).toBe(0);
    const printed = cli.json as unknown as Awaited<ReturnType<typeof predict>>;
    expect(lib.predictions.map((p) => [p.file, p.label])).toEqual(printed.predictions.map((p) => [p.file, p.label]));
    expect(lib.predictions).toHaveLength(5);
    lib.predictions.forEach((p, i) => {
      expect(Object.keys(p.probabilities).sort()).toEqual([...fx.classes].sort());
      for (const [label, value] of Object.entries(p.probabilities)) expect(value).toBeCloseTo(printed.predictions[i]!.probabilities[label]!, 5);
      expect(p.probability).toBe(Math.max(...Object.values(p.probabilities)));
    });
  });

  it('refuses an empty input list with a usage error', async () => {
    await expect(predict(model, [])).rejects.toMatchObject({ code: 'SPLITFIT_USAGE' });
  });
});
