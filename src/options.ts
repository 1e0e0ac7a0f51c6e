import { SplitfitError } from './errors.js';

/**
 * One options discipline for every entry point (p-queue's habit):
 * - `withDefaults` spreads the defaults under the caller's options *after* dropping `undefined`, so
 *   `{ epochs: undefined }` means "the default", as it reads;
 * - a value of the wrong JavaScript type is a programmer error: `TypeError`;
 * - a value of the right type that is out of range is bad input: `SPLITFIT_USAGE`, naming the option in
 *   the API's own words (`learningRate`) in backticks; the CLI rewrites those names to its flags (`--lr`).
 */
export function withDefaults<D extends object, O extends object>(defaults: D, options: O): D & O {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  return { ...defaults, ...defined } as D & O;
}

function usage(option: string, expected: string, got: unknown): SplitfitError {
  return new SplitfitError('SPLITFIT_USAGE', `\`${option}\` must be ${expected}, got ${describe(got)}`, { option });
}

function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function assertType(option: string, v: unknown, type: 'number' | 'string' | 'boolean' | 'object'): void {
  if (typeof v !== type || v === null) throw new TypeError(`${option} must be a ${type}, received ${v === null ? 'null' : typeof v}`);
}

export function checkPositiveInt(option: string, v: unknown, max = Number.MAX_SAFE_INTEGER): number {
  assertType(option, v, 'number');
  const n = v as number;
  if (!Number.isInteger(n) || n <= 0 || n > max) throw usage(option, max === Number.MAX_SAFE_INTEGER ? 'a positive integer' : `an integer in [1, ${max}]`, n);
  return n;
}

export function checkNonNegativeInt(option: string, v: unknown): number {
  assertType(option, v, 'number');
  const n = v as number;
  if (!Number.isSafeInteger(n) || n < 0) throw usage(option, 'a whole number ≥ 0', n);
  return n;
}

export function checkPositiveNumber(option: string, v: unknown): number {
  assertType(option, v, 'number');
  const n = v as number;
  if (!Number.isFinite(n) || n <= 0) throw usage(option, 'a positive finite number', n);
  return n;
}

/** A number in [0, 1). */
export function checkFraction(option: string, v: unknown): number {
  assertType(option, v, 'number');
  const n = v as number;
  if (!(n >= 0 && n < 1)) throw usage(option, 'a number in [0, 1)', n);
  return n;
}

export function checkChoice<T extends string>(option: string, v: unknown, choices: readonly T[]): T {
  assertType(option, v, 'string');
  if (!(choices as readonly string[]).includes(v as string)) throw usage(option, `one of ${choices.join(', ')}`, v);
  return v as T;
}

export function checkString(option: string, v: unknown): string {
  assertType(option, v, 'string');
  if ((v as string).trim() === '') throw usage(option, 'a non-empty string', v);
  return v as string;
}
