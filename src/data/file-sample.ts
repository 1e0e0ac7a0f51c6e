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
 * read (symbolic links are followed): a FIFO, a device or a socket is `SPLITFIT_DATA_DECODE` here,
 * when the data source is listed — before `--skip-bad` could apply, since such a file has no
 * content to identify it by.
 * @param where How to name the sample in errors, e.g. `labels.csv line 7` (defaults to the path).
 */
export async function fileSample(path: string, label: string | undefined, where = path): Promise<Sample> {
  const id = await hashFile(path, where);
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
async function hashFile(path: string, where: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    const { handle, stats } = await openRegularFile(path);
    try {
      const { size } = stats;
      const chunk = Buffer.allocUnsafe(Math.max(1, Math.min(size, READ_CHUNK)));
      for (;;) {
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) break;
        hash.update(chunk.subarray(0, bytesRead));
      }
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw readError(path, where, err);
  }
  return hash.digest('hex');
}

function readError(path: string, where: string, err: unknown): SplitfitError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason =
    err instanceof NotRegularFileError
      ? `is ${err.kind}, not a regular file; only regular image files are read (remove it, or link to the image itself)`
      : code === 'ENOENT'
        ? 'file not found'
        : code === 'EISDIR'
          ? 'is a directory, not an image file'
          : String(err);
  const place = where === path ? path : `${path} (${where})`;
  const fix = where === path ? '' : '; correct the path or remove that line';
  return new SplitfitError('SPLITFIT_DATA_DECODE', `cannot read ${place}: ${reason}${fix}`, { cause: err });
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
