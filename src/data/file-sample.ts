import { createHash } from 'node:crypto';
import { SplitfitError } from '../errors.js';
import { NotRegularFileError, openRegularFile, readRegularFile } from './regular-file.js';
import type { Sample } from './types.js';

/** Files hashed at once while listing: enough to hide disk latency, few enough to keep memory flat. */
const LISTING_CONCURRENCY = 16;
const READ_CHUNK = 1 << 20;

/**
 * A sample backed by a file. The file is read once here to compute its id, and not kept:
 * `load()` reads it again and checks that it still has the listed content. Only regular files are
 * read (symbolic links are followed): a folder is `SPLITFIT_DATA_DECODE` here; for a FIFO, a device
 * or a socket, nothing is read and `load()`
 * fails with `SPLITFIT_DATA_DECODE` naming it, like an undecodable image (so `--skip-bad` counts it
 * as failed). Its id is derived from its path, since it has no content to identify it by.
 * @param where How to name the sample in errors, e.g. `labels.csv line 7` (defaults to the path).
 */
export async function fileSample(path: string, label: string | undefined, where = path): Promise<Sample> {
  let id: string;
  try {
    id = await hashFile(path);
  } catch (err) {
    // A folder where a file belongs is a listing mistake, like a missing file; a special file is a bad sample.
    if (err instanceof NotRegularFileError && !err.isDirectory) return unreadableSample(path, label, where, err);
    throw readError(path, where, err);
  }
  const sample: Sample = {
    id,
    source: path,
    async load() {
      let bytes: Buffer;
      try {
        bytes = await readRegularFile(path);
      } catch (err) {
        throw readError(path, where, err);
      }
      if (sha256(bytes) !== id) {
        throw new SplitfitError(
          'SPLITFIT_DATA_DECODE',
          `${path} changed after the data source was listed (its content hash differs); open the data source again`,
        );
      }
      return bytes;
    },
  };
  if (label !== undefined) sample.label = label;
  return sample;
}

/**
 * A listed path that is not a regular file. The id hashes a prefix no content hash can share with
 * the path, so it is stable, distinct per path, and never the id of an image.
 */
function unreadableSample(path: string, label: string | undefined, where: string, err: NotRegularFileError): Sample {
  const sample: Sample = {
    id: sha256(Buffer.from(`splitfit:not-a-regular-file\n${path}`)),
    source: path,
    load: () => Promise.reject(readError(path, where, err)),
  };
  if (label !== undefined) sample.label = label;
  return sample;
}

/** Lists samples for many files with bounded concurrency, keeping the input order. */
export function fileSamples(
  entries: readonly { path: string; label: string | undefined; where?: string }[],
): Promise<Sample[]> {
  return mapLimit(entries, LISTING_CONCURRENCY, (e) => fileSample(e.path, e.label, e.where));
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** SHA-256 hex of a file, streamed in chunks so a large file is never held whole. */
async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  const { handle, stats } = await openRegularFile(path);
  try {
    const chunk = Buffer.allocUnsafe(Math.max(1, Math.min(stats.size, READ_CHUNK)));
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      hash.update(chunk.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

function readError(path: string, where: string, err: unknown): SplitfitError {
  const place = where === path ? path : `${path} (${where})`;
  const fix = where === path ? '' : '; correct the path or remove that line';
  return new SplitfitError('SPLITFIT_DATA_DECODE', `cannot read ${place}: ${readFailure(err)}${fix}`, { cause: err });
}

function readFailure(err: unknown): string {
  if (err instanceof NotRegularFileError) {
    if (err.isDirectory) return 'is a directory, not an image file';
    return (
      `is ${err.kind}, not a regular file; only regular image files are read: remove it or link to the image itself, ` +
      'or pass --skip-bad (cache-features) to count it as failed'
    );
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'file not found';
  if (code === 'EISDIR') return 'is a directory, not an image file';
  return String(err);
}

/** `Promise.all(items.map(fn))` with at most `limit` calls in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
