import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataSource, type SplitfitError } from '../src/index.js';
import { makeTempDir, solid, writeAt } from './data-fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await makeTempDir('tasks-manifest'));
  // Four images with distinct bytes: a.png … d.png.
  for (const [i, name] of ['a', 'b', 'c', 'd'].entries()) await writeAt(join(dir, `${name}.png`), await solid([10 * i, 20, 30], 'png', 8, i + 1));
});
afterAll(() => cleanup());

const manifest = (name: string, text: string): Promise<string> => writeAt(join(dir, name), text);

/** The rejection of `p`, as {code, message}. */
async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as SplitfitError | undefined;
  expect(err, 'expected a rejection').toBeDefined();
  return { code: err!.code, message: err!.message };
}

describe('manifest targets decide the task', () => {
  it('CSV path,target…: regress, target names = column names, values as numbers', async () => {
    const file = await manifest('reg.csv', 'path,target_angle,target_scale\na.png,-12.5,1\nb.png,3e1,0.5\n');
    const source = await openDataSource(file);
    expect(source.task).toBe('regress');
    expect(source.labels).toEqual(['target_angle', 'target_scale']);
    expect(source.samples.map((s) => s.values)).toEqual([
      [-12.5, 1],
      [30, 0.5],
    ]);
    expect(source.samples.every((s) => s.label === undefined)).toBe(true);
  });

  it('CSV path,labels with "|": multilabel, sets sorted, labels = every label named', async () => {
    const file = await manifest('multi.csv', 'path,labels\na.png, smile|cat \nb.png,dog\nc.png,cat|dog|smile\n');
    const source = await openDataSource(file);
    expect(source.task).toBe('multilabel');
    expect(source.labels).toEqual(['cat', 'dog', 'smile']);
    expect(source.samples.map((s) => s.labelSet)).toEqual([['cat', 'smile'], ['dog'], ['cat', 'dog', 'smile']]);
  });

  it('CSV path,label stays classify, numeric labels stay class names (no task field)', async () => {
    const file = await manifest('cls.csv', 'path,label\na.png,12.50\nb.png,3\n');
    const source = await openDataSource(file);
    expect(source.task).toBeUndefined();
    expect(source.labels).toEqual(['12.50', '3']);
    expect(source.samples.map((s) => s.values)).toEqual([undefined, undefined]);
  });

  it('JSONL: "labels" arrays (an empty set allowed), "target" numbers or named objects', async () => {
    const multi = await manifest('multi.jsonl', '{"path":"a.png","labels":["x","y"]}\n{"path":"b.png","labels":[]}\n');
    const m = await openDataSource(multi);
    expect([m.task, m.labels, m.samples.map((s) => s.labelSet)]).toEqual(['multilabel', ['x', 'y'], [['x', 'y'], []]]);
    const one = await manifest('reg1.jsonl', '{"path":"a.png","target":1.5}\n{"path":"b.png","target":-2}\n');
    const r1 = await openDataSource(one);
    expect([r1.task, r1.labels, r1.samples.map((s) => s.values)]).toEqual(['regress', ['target'], [[1.5], [-2]]]);
    const named = await manifest('reg2.jsonl', '{"path":"a.png","target":{"angle":10,"zoom":2}}\n{"path":"b.png","target":{"angle":-5,"zoom":1}}\n');
    const r2 = await openDataSource(named);
    expect([r2.labels, r2.samples.map((s) => s.values)]).toEqual([['angle', 'zoom'], [[10, 2], [-5, 1]]]);
  });
});

describe('task forces how targets are read', () => {
  it('regress reads a label column as numbers named "label"; multilabel splits it on "|"', async () => {
    const file = await manifest('force.csv', 'path,label\na.png,4\nb.png,-1.25\n');
    const r = await openDataSource(file, { task: 'regress' });
    expect([r.task, r.labels, r.samples.map((s) => s.values)]).toEqual(['regress', ['label'], [[4], [-1.25]]]);
    const sets = await manifest('force-ml.csv', 'path,label\na.png,x|y\nb.png,y\n');
    const m = await openDataSource(sets, { task: 'multilabel' });
    expect([m.task, m.labels, m.samples.map((s) => s.labelSet)]).toEqual(['multilabel', ['x', 'y'], [['x', 'y'], ['y']]]);
  });

  it('classify reads a single target column as class text and a one-label set as its class', async () => {
    const file = await manifest('force-cls.csv', 'path,target\na.png,1.50\nb.png,2\n');
    const c = await openDataSource(file, { task: 'classify' });
    expect([c.task, c.labels, c.samples.map((s) => s.label)]).toEqual([undefined, ['1.50', '2'], ['1.50', '2']]);
    const one = await manifest('force-cls.jsonl', '{"path":"a.png","labels":["x"]}\n{"path":"b.png","labels":["y"]}\n');
    expect((await openDataSource(one, { task: 'classify' })).samples.map((s) => s.label)).toEqual(['x', 'y']);
  });

  it('refuses a task the columns cannot carry, and non-classify tasks on folders (SPLITFIT_USAGE)', async () => {
    const sets = await manifest('sets.csv', 'path,labels\na.png,x\n');
    expect(await failure(openDataSource(sets, { task: 'regress' }))).toEqual({ code: 'SPLITFIT_USAGE', message: expect.stringMatching(/task regress cannot read them/) });
    expect(await failure(openDataSource(dir, { task: 'multilabel' }))).toEqual({ code: 'SPLITFIT_USAGE', message: expect.stringMatching(/needs targets from a manifest/) });
    expect(await failure(openDataSource(sets, { task: 'softmax' as never }))).toEqual({ code: 'SPLITFIT_USAGE', message: expect.stringContaining('classify, multilabel, regress') });
  });
});

describe('bad targets are SPLITFIT_DATA_DECODE naming the file and line', () => {
  const cases: [string, string, RegExp][] = [
    ['nan.csv', 'path,target\na.png,1\nb.png,NaN\n', /nan\.csv line 3: target "target" of b\.png must be a finite decimal number, got "NaN"/],
    ['inf.csv', 'path,target\na.png,Infinity\n', /line 2: .*got "Infinity"/],
    ['empty.csv', 'path,target\na.png,\n', /line 2: empty target "target" for a\.png/],
    ['word.csv', 'path,target\na.png,12deg\n', /line 2: .*got "12deg"/],
    ['empty-set.csv', 'path,labels\na.png,x\nb.png,\n', /line 3: empty label set for b\.png/],
    ['hole.csv', 'path,labels\na.png,x||y\n', /line 2: empty label in the set of a\.png/],
    ['twice.csv', 'path,labels\na.png,x|x\n', /line 2: label "x" appears twice/],
    ['mixed.jsonl', '{"path":"a.png","label":"x"}\n{"path":"b.png","labels":["x"]}\n', /line 2: mixed kinds of target: this line has "labels", line 1 has "label"/],
    ['keys.jsonl', '{"path":"a.png","target":{"a":1}}\n{"path":"b.png","target":{"b":1}}\n', /line 2: "target" has the keys \[b\], line 1 has \[a\]/],
    ['null.jsonl', '{"path":"a.png","target":null}\n', /line 1: "target" must be a number or an object/],
    ['str.jsonl', '{"path":"a.png","target":"3"}\n', /line 1: "target" must be a number/],
    ['both.jsonl', '{"path":"a.png","label":"x","target":1}\n', /line 1: give one of "label", "labels" or "target", not "label" and "target"/],
    ['many.csv', 'path,labels\na.png,x|y\n', /line 2: task classify reads one class, but the set of a\.png has 2 labels/],
  ];
  for (const [name, text, pattern] of cases) {
    it(name, async () => {
      const file = await manifest(name, text);
      const got = await failure(openDataSource(file, name === 'many.csv' ? { task: 'classify' } : {}));
      expect(got.code).toBe('SPLITFIT_DATA_DECODE');
      expect(got.message).toMatch(pattern);
      expect(got.message).toContain(file);
    });
  }

  it('a label outside knownLabels names the row and the closest known label', async () => {
    const file = await manifest('unknown.csv', 'path,labels\na.png,cat\nb.png,cat|dgo\n');
    const got = await failure(openDataSource(file, { knownLabels: ['cat', 'dog'] }));
    expect(got).toEqual({ code: 'SPLITFIT_DATA_DECODE', message: expect.stringMatching(/line 3: label "dgo" is not one of the known labels \(cat, dog\); did you mean "dog"/) });
  });

  it('a header with no target column names the three accepted headers', async () => {
    const file = await manifest('header.csv', 'path,lable\na.png,x\n');
    const got = await failure(openDataSource(file));
    expect(got.code).toBe('SPLITFIT_USAGE');
    expect(got.message).toMatch(/"path,label" \(classify\), "path,labels" \(multilabel.*"path,target\[,target2…\]" \(regress\)/);
  });

  it('the same bytes with two different targets are a conflict', async () => {
    const file = await manifest('conflict.csv', 'path,target\na.png,1\na.png,2\n');
    expect((await failure(openDataSource(file))).code).toBe('SPLITFIT_DATA_CONFLICT');
    const same = await manifest('same.csv', 'path,target\na.png,1\na.png,1\n');
    expect((await openDataSource(same)).duplicates).toHaveLength(1);
  });
});
