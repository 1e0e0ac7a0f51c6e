/**
 * The architecture as a test: every import in src/ points down (or sideways, within a floor) the
 * layer order written in docs/DESIGN.md. A new arrow upwards fails here, naming the file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '..', 'src');

/** Bottom to top; a module may import its own floor and the floors below it. */
export const LAYERS = [
  ['errors', 'random', 'options'],
  ['backend'],
  ['data'],
  ['model'],
  ['cache'],
  ['extract'],
  ['train'],
  ['output'],
  ['report'],
  ['infer'],
  ['job'],
  ['cli'],
  ['index', 'browser'],
] as const;

function floorOf(file: string): number {
  const top = relative(SRC, file).split('/')[0]!.replace(/\.ts$/, '');
  const floor = LAYERS.findIndex((names) => (names as readonly string[]).includes(top));
  if (floor < 0) throw new Error(`src/${relative(SRC, file)} is on no floor: add its folder to LAYERS and to docs/DESIGN.md`);
  return floor;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.{1,2}\/[^']+)'/g)].map((m) => resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
}

describe('layer order', () => {
  it('every relative import in src/ points to the same floor or one below', () => {
    const files = sources(SRC);
    expect(files.length).toBeGreaterThan(40);
    const upward: string[] = [];
    for (const file of files) {
      for (const target of imports(file)) {
        if (floorOf(target) > floorOf(file)) upward.push(`src/${relative(SRC, file)} imports src/${relative(SRC, target)} (floor ${LAYERS[floorOf(target)]!.join('/')} is above ${LAYERS[floorOf(file)]!.join('/')})`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('the check sees an upward import (it cannot pass by reading nothing)', () => {
    const predictor = join(SRC, 'infer', 'predictor.ts');
    expect(imports(predictor).some((t) => floorOf(t) === floorOf(join(SRC, 'output', 'folder.ts')))).toBe(true);
    expect(floorOf(join(SRC, 'output', 'folder.ts'))).toBeGreaterThan(floorOf(join(SRC, 'train', 'fit.ts')));
  });

  it('docs/DESIGN.md writes down the same order', () => {
    const design = readFileSync(resolve(SRC, '..', 'docs', 'DESIGN.md'), 'utf8');
    const line = LAYERS.map((names) => names.join('/')).join(' < ');
    expect(design).toContain(line);
  });
});
