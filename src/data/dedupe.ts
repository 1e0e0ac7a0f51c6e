import { SplitfitError } from '../errors.js';
import type { DuplicateSample, Sample } from './types.js';

/**
 * Keeps the first sample of each id (the listing order is stable, so "first" is too) and reports the
 * others as duplicates. The same bytes under two labels are `SPLITFIT_DATA_CONFLICT` naming both
 * files: keeping either label would be silent label noise.
 */
export function dedupeSamples(samples: readonly Sample[]): { samples: Sample[]; duplicates: DuplicateSample[] } {
  const first = new Map<string, Sample>();
  const kept: Sample[] = [];
  const duplicates: DuplicateSample[] = [];
  for (const sample of samples) {
    const earlier = first.get(sample.id);
    if (earlier === undefined) {
      first.set(sample.id, sample);
      kept.push(sample);
    } else if (targetText(earlier) !== targetText(sample)) {
      throw new SplitfitError(
        'SPLITFIT_DATA_CONFLICT',
        `the same image is labelled '${targetText(earlier)}' as ${earlier.source} and '${targetText(sample)}' as ${sample.source} ` +
          `(identical bytes); remove the copy with the wrong label`,
      );
    } else {
      duplicates.push({ ...sample, duplicateOf: earlier.source });
    }
  }
  return { samples: kept, duplicates };
}

/** A sample's target as one comparable text: its class, its label set (`a|b`) or its values (`1.5,2`). */
function targetText(s: Sample): string | undefined {
  if (s.labelSet !== undefined) return s.labelSet.join('|');
  if (s.values !== undefined) return s.values.join(',');
  return s.label;
}
