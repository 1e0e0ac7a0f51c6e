/**
 * LevelDB's errors translated to splitfit's codes (abstract-level's habit: a stable `code`,
 * the lower error kept as `cause`): `LEVEL_LOCKED` → `SPLITFIT_CACHE_LOCKED`,
 * `LEVEL_CORRUPTION` → `SPLITFIT_CACHE_CORRUPT`, anything else → `SPLITFIT_IO` with the fix
 * for the usual causes (disk full, read-only file system, permissions).
 */
import { SplitfitError } from '../errors.js';

/** The string `code` of an error (Node's `ENOSPC`, level's `LEVEL_LOCKED`, …), if any. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

export function errorCause(err: unknown): unknown {
  return err instanceof Error ? err.cause : undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether `err` or its cause carries `code` (level wraps the binding's error in its own). */
export function hasLevelCode(err: unknown, code: string): boolean {
  return errorCode(err) === code || errorCode(errorCause(err)) === code;
}

/** The fix for the usual I/O failures, appended to SPLITFIT_IO messages. */
export function ioHint(message: string): string {
  if (/no space left on device|ENOSPC|disk quota exceeded|EDQUOT/i.test(message)) {
    return '. The disk is full: free space (or use another --cache) and rerun; entries already written are kept and are not extracted again';
  }
  if (/read-only file system|EROFS/i.test(message)) return '. The cache is on a read-only file system: use another --cache';
  if (/permission denied|EACCES|EPERM/i.test(message)) return '. Check the permissions of the cache directory, or use another --cache';
  return '';
}

/**
 * The error of a failed LevelDB `open` of `dir`, except `LEVEL_LOCKED`, which the caller
 * words itself (it knows the holder): corruption or a coded I/O error.
 */
export function openError(dir: string, err: unknown): SplitfitError {
  const detail = errorMessage(errorCause(err) ?? err);
  if (hasLevelCode(err, 'LEVEL_CORRUPTION')) {
    return new SplitfitError(
      'SPLITFIT_CACHE_CORRUPT',
      `LevelDB reports corruption in cache ${dir}: ${detail}. Remove the directory (or run ClassicLevel.repair) and re-run cache-features.`,
      { cause: err },
    );
  }
  return new SplitfitError('SPLITFIT_IO', `could not open cache ${dir}: ${detail}${ioHint(detail)}`, { cause: err });
}

/** The error of a failed LevelDB call `op` on the open cache `dir`. */
export function ioError(dir: string, op: string, err: unknown): SplitfitError {
  if (hasLevelCode(err, 'LEVEL_CORRUPTION')) {
    return new SplitfitError('SPLITFIT_CACHE_CORRUPT', `${op}: LevelDB reports corruption in cache ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  return new SplitfitError('SPLITFIT_IO', `${op} failed on cache ${dir}: ${errorMessage(err)}${ioHint(errorMessage(err))}`, { cause: err });
}
