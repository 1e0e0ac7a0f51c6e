import type { Stats } from 'node:fs';
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

/**
 * Thrown when a path names something other than a regular file (a FIFO, a device, a socket, a folder).
 * Callers turn it into their own coded error, naming the file the way their user knows it.
 */
export class NotRegularFileError extends Error {
  constructor(
    readonly path: string,
    /** What the path is, e.g. `a FIFO (named pipe)`. */
    readonly kind: string,
    readonly isDirectory = false,
  ) {
    super(`${path} is ${kind}, not a regular file`);
  }
}

/**
 * Opens a regular file for reading, following symbolic links. The open is non-blocking, so a FIFO
 * with no writer cannot hang it, and the fd is fstat'ed before any read, so a device such as
 * `/dev/zero` (endless, and sized 0) is never read. O_NONBLOCK changes nothing for regular files.
 * Throws `NotRegularFileError` for anything else; errno errors (ENOENT, EACCES…) pass through.
 */
export async function openRegularFile(path: string): Promise<{ handle: FileHandle; stats: Stats }> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new NotRegularFileError(path, fileKind(stats), stats.isDirectory());
    return { handle, stats };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** The whole content of a regular file (see {@link openRegularFile}). */
export async function readRegularFile(path: string): Promise<Buffer> {
  const { handle } = await openRegularFile(path);
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

function fileKind(stats: Stats): string {
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  if (stats.isDirectory()) return 'a directory';
  return 'a special file';
}
