/**
 * The lock-holder sidecar: LevelDB's lock says *that* a cache is held, never *by whom*, and a
 * locked database cannot be read. So every process that opens a cache also writes
 * `splitfit-holder.json` next to LevelDB's files, and whoever finds the cache locked reads it.
 */
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { HOLDER_FILE } from './keys.js';
import { errorCode } from './level-errors.js';
import type { CacheHolder } from './types.js';

/** The sidecar's content: the holder plus a token, so a process removes only its own file. */
export interface HolderFile extends CacheHolder {
  token: string;
}

const noop = (): void => undefined;

function isHolder(value: unknown): value is HolderFile {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.pid === 'number' && typeof v.command === 'string' && typeof v.startedAt === 'string';
}

/** Whether `pid` names a running process (one owned by another user counts). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errorCode(err) === 'EPERM'; // exists, owned by someone else
  }
}

/** The holder named in `dir`, or `undefined` when there is no readable sidecar. */
export async function readHolderFile(dir: string): Promise<HolderFile | undefined> {
  try {
    const parsed: unknown = JSON.parse(await fsp.readFile(path.join(dir, HOLDER_FILE), 'utf8'));
    return isHolder(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes the sidecar under a temporary name and renames it into place, so a reader sees the
 * old holder or the new one, never half a file (a kill before the rename leaves a `.tmp` file
 * that names no one). Returns the token that {@link removeHolderFile} checks.
 */
export async function writeHolderFile(dir: string, holder: CacheHolder): Promise<string> {
  const token = randomUUID();
  const file = path.join(dir, HOLDER_FILE);
  const tmp = `${file}.${process.pid}.${token.slice(0, 8)}.tmp`;
  await fsp.writeFile(tmp, JSON.stringify({ ...holder, token } satisfies HolderFile) + '\n');
  await fsp.rename(tmp, file);
  return token;
}

/** Removes the sidecar when it is still ours (another process may have replaced it since). */
export async function removeHolderFile(dir: string, token: string): Promise<void> {
  const holder = await readHolderFile(dir);
  if (holder?.token === token) await fsp.rm(path.join(dir, HOLDER_FILE), { force: true }).catch(noop);
}

/** The message of `SPLITFIT_CACHE_LOCKED`: who holds `dir`, as far as the sidecar tells. */
export async function lockedMessage(dir: string): Promise<string> {
  const holder = await readHolderFile(dir);
  const elsewhere = 'A cache can be open in one process at a time: wait for it to finish, stop it, or use another --cache directory.';
  if (holder === undefined) return `cache ${dir} is locked by another process (it left no ${HOLDER_FILE}). ${elsewhere}`;
  const opened = `opened ${holder.readOnly ? 'read-only' : 'for writing'} at ${holder.startedAt}`;
  if (holder.pid === process.pid) {
    return (
      `cache ${dir} is already open in this process (pid ${holder.pid}, "${holder.command}", ${opened}). ` +
      'Use that FeatureCache or close it first: a cache can be open once at a time.'
    );
  }
  if (!isProcessAlive(holder.pid)) {
    return (
      `cache ${dir} is locked by another process; its ${HOLDER_FILE} names pid ${holder.pid} ("${holder.command}"), ` +
      `which is no longer running, so the holder is unknown. ${elsewhere}`
    );
  }
  return `cache ${dir} is locked by pid ${holder.pid} running "${holder.command}" (${opened}). ${elsewhere}`;
}
