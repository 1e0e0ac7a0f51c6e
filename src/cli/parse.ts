import { SplitfitError } from '../errors.js';

/** Flag parsers for commander: they reject bad values with SPLITFIT_USAGE naming the flag. */
export function positiveInt(flag: string, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n <= 0 || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? 'a positive integer' : `an integer from 1 to ${max}`;
      throw new SplitfitError('SPLITFIT_USAGE', `${flag} needs ${range}, got "${value}"`);
    }
    return n;
  };
}

export function nonNegativeInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new SplitfitError('SPLITFIT_USAGE', `${flag} needs a whole number ≥ 0, got "${value}"`);
    return n;
  };
}

export function positiveNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new SplitfitError('SPLITFIT_USAGE', `${flag} needs a positive number, got "${value}"`);
    return n;
  };
}

export function fraction(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !(n >= 0 && n < 1)) throw new SplitfitError('SPLITFIT_USAGE', `${flag} needs a number in [0, 1), got "${value}"`);
    return n;
  };
}

/** `HxW`, e.g. `224x224`. */
export function size(flag: string): (value: string) => [number, number] {
  return (value) => {
    const m = /^(\d+)x(\d+)$/.exec(value.trim());
    if (!m || Number(m[1]) <= 0 || Number(m[2]) <= 0) throw new SplitfitError('SPLITFIT_USAGE', `${flag} needs HxW (e.g. 224x224), got "${value}"`);
    return [Number(m[1]), Number(m[2])];
  };
}

/** `balanced` or a comma list of numbers. */
export function classWeights(value: string): 'balanced' | number[] {
  if (value === 'balanced') return value;
  const parts = value.split(',').map(Number);
  if (parts.some((n) => !Number.isFinite(n) || n < 0)) {
    throw new SplitfitError('SPLITFIT_USAGE', `--class-weights needs "balanced" or a comma list of numbers ≥ 0, got "${value}"`);
  }
  return parts;
}
