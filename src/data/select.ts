import { hashSeed, rng, shuffled } from '../random.js';
import { closestMatches, SplitfitError } from '../errors.js';
import type { DataSource, Sample } from './types.js';

export interface SelectSamplesOptions {
  /**
   * Classes to keep. The result's `labels` keep the source's order (not this array's), so class
   * indices are renumbered 0..k-1 over the kept classes.
   * @default all classes of the source
   */
  classes?: readonly string[];
  /** At most this many samples per class, drawn at random with `seed`. @default every sample */
  perClass?: number;
  /** Seed of the per-class draw. @default 0 */
  seed?: number;
}

/**
 * A deterministic subset of a labeled data source: the same source, options and seed give the same
 * samples. Each class is drawn with its own random stream (seeded by `seed` and the class name), so
 * adding or removing a class does not change what is drawn for the others. Selected samples keep the
 * source's order.
 */
export function selectSamples(source: DataSource, options: SelectSamplesOptions = {}): DataSource {
  const { classes, perClass, seed } = validateSelectOptions(source, options);
  const wanted = new Set(classes ?? source.labels);
  const labels = source.labels.filter((l) => wanted.has(l));

  const byClass = new Map<string, number[]>(labels.map((l) => [l, []]));
  source.samples.forEach((s, i) => {
    if (s.label !== undefined) byClass.get(s.label)?.push(i);
  });

  const chosen = new Set<number>();
  for (const [label, indices] of byClass) {
    if (indices.length === 0 && classes) {
      throw new SplitfitError('SPLITFIT_DATA_EMPTY', `class '${label}' has no samples in ${source.root}`);
    }
    const picked = perClass === undefined ? indices : shuffled(indices, rng(hashSeed(`${seed}:${label}`)) /* each class its own stream */).slice(0, perClass);
    for (const i of picked) chosen.add(i);
  }
  const samples: Sample[] = source.samples.filter((_, i) => chosen.has(i));
  if (samples.length === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', `no samples selected from ${source.root}`);
  return { kind: source.kind, root: source.root, labels, samples };
}

function validateSelectOptions(
  source: DataSource,
  options: SelectSamplesOptions,
): { classes: readonly string[] | undefined; perClass: number | undefined; seed: number } {
  const { classes, perClass, seed = 0 } = options;
  if (source.labels.length === 0) {
    throw new SplitfitError('SPLITFIT_USAGE', `selectSamples needs a labeled data source; ${source.root} has no labels`);
  }
  if (perClass !== undefined && !(Number.isInteger(perClass) && perClass > 0)) {
    throw new SplitfitError('SPLITFIT_USAGE', `perClass must be a positive integer, got ${String(perClass)}`);
  }
  if (!Number.isSafeInteger(seed)) {
    throw new SplitfitError('SPLITFIT_USAGE', `seed must be an integer, got ${String(seed)}`);
  }
  if (classes) {
    if (classes.length === 0) throw new SplitfitError('SPLITFIT_USAGE', 'classes must name at least one class');
    for (const c of classes) {
      if (!source.labels.includes(c)) {
        const near = closestMatches(c, source.labels);
        throw new SplitfitError(
          'SPLITFIT_USAGE',
          `unknown class '${c}'${near.length > 0 ? ` (did you mean ${near.map((n) => `'${n}'`).join(', ')}?)` : ''}; ` +
            `valid classes: ${source.labels.join(', ')}`,
        );
      }
    }
  }
  return { classes, perClass, seed };
}
