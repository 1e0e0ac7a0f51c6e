/**
 * Coded errors. The `code` is a stable contract (listed in the README); messages may improve.
 * Programmer mistakes (wrong argument types) throw `TypeError` instead.
 */
export const ERROR_CODES = [
  'SPLITFIT_USAGE',
  'SPLITFIT_MODEL_LOAD',
  'SPLITFIT_LAYER_NOT_FOUND',
  'SPLITFIT_BOUNDARY_NOT_A_CUT',
  'SPLITFIT_HEAD_SPEC',
  'SPLITFIT_DATA_EMPTY',
  'SPLITFIT_DATA_DECODE',
  /** One thing twice in a data set: the same image under two labels, or one folder in two classes. */
  'SPLITFIT_DATA_CONFLICT',
  'SPLITFIT_CACHE_LOCKED',
  'SPLITFIT_CACHE_CORRUPT',
  'SPLITFIT_CACHE_MISMATCH',
  'SPLITFIT_BACKEND_UNAVAILABLE',
  'SPLITFIT_IO',
  'SPLITFIT_NUMERIC',
  /** The command was interrupted (SIGINT/SIGTERM, or an aborted `signal`); caches stay consistent and resumable. */
  'SPLITFIT_INTERRUPTED',
  /** Not a contract code: an unexpected failure (a bug); rerun with --verbose and report it. */
  'SPLITFIT_INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class SplitfitError extends Error {
  override readonly name = 'SplitfitError';
  readonly code: ErrorCode;
  /** For `SPLITFIT_USAGE`: the option at fault, in the API's words (the CLI names its flag instead). */
  readonly option?: string;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; option?: string }) {
    super(message, options);
    this.code = code;
    if (options?.option !== undefined) this.option = options.option;
  }
}

export function isSplitfitError(err: unknown, code?: ErrorCode): err is SplitfitError {
  return err instanceof SplitfitError && (code === undefined || err.code === code);
}

/**
 * Throws when `signal` was aborted: its reason when that is a `SplitfitError` (the CLI's SIGINT),
 * else `SPLITFIT_INTERRUPTED` wrapping it.
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  const reason: unknown = signal.reason;
  if (reason instanceof SplitfitError) throw reason;
  throw new SplitfitError('SPLITFIT_INTERRUPTED', 'interrupted: the operation was aborted; rerun it to resume', { cause: reason });
}

/** Exit status for the CLI: 2 for bad usage, 1 for every other error. */
export function exitCodeFor(err: unknown): 1 | 2 {
  return isSplitfitError(err, 'SPLITFIT_USAGE') ? 2 : 1;
}

/** Closest names by edit distance, for "did you mean" messages. */
export function closestMatches(name: string, candidates: readonly string[], max = 3): string[] {
  const scored = candidates.map((c) => ({ c, d: editDistance(name.toLowerCase(), c.toLowerCase()) }));
  const limit = Math.max(2, Math.floor(name.length / 2));
  return scored
    .filter((s) => s.d <= limit || s.c.toLowerCase().includes(name.toLowerCase()))
    .sort((a, b) => a.d - b.d)
    .slice(0, max)
    .map((s) => s.c);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, sub));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
