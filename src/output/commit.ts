import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { SplitfitError } from '../errors.js';
import { message, writeDurable } from '../model/io.js';

/**
 * A folder whose splitfit-written files change in one step, as LevelDB's log and SQLite's journal do:
 *
 * 1. every new file is written into `.splitfit-staging/` inside the folder and flushed;
 * 2. the commit record (`COMMIT.json`: each file's path, size and SHA-256) is written there last and
 *    flushed: from this moment the change is decided;
 * 3. the staged files are renamed into place, files of the previous commit that the new one no longer
 *    has are removed (never a file splitfit did not write), and the record becomes `splitfit.commit.json`.
 *
 * A kill before 2 leaves the previous folder as it was (the staging folder is dropped by the next
 * commit or reader); a kill during 3 is finished ("rolled forward") by the next splitfit command that
 * opens the folder. Readers check every file against the record, so a folder mixing two runs is an
 * error, never a silently wrong model.
 */
export const COMMIT_FILE = 'splitfit.commit.json';
const STAGING = '.splitfit-staging';
const STAGED_RECORD = 'COMMIT.json';
const OWNER = 'OWNER';
const RECORD_FORMAT = 'splitfit-commit/1';

export interface CommittedFile {
  /** Path relative to the folder, `/`-separated. */
  path: string;
  bytes: number;
  sha256: string;
}

export interface CommitRecord {
  format: typeof RECORD_FORMAT;
  files: CommittedFile[];
}

export interface CommitOptions {
  /** Files of the previous commit that stay part of the new one unchanged (e.g. the model, when only a report is regenerated). */
  keep?: readonly string[];
}

/** What marks a hidden sibling a new folder is committed in: `.<name>.splitfit-new-<pid>`. */
const NEW_MARK = '.splitfit-new-';

/**
 * Replaces the folder's splitfit files by `files` in one step (see above). A folder that does not
 * exist yet is committed whole in a hidden sibling (`.<name>.splitfit-new-<pid>`) that is then renamed
 * into place: a kill leaves no folder (and a sibling the next commit beside it removes) or the
 * complete one, never an empty-looking folder. An existing folder — even an empty one, which may be a
 * mount point or a symlink that a rename could not replace — is committed in place.
 */
export async function commitFiles(dir: string, files: ReadonlyMap<string, string | Uint8Array>, options: CommitOptions = {}): Promise<CommitRecord> {
  const target = resolve(dir);
  const parent = dirname(target);
  const prefix = `.${basename(target)}${NEW_MARK}`;
  await removeStaleSiblings(parent, prefix);
  if (await exists(target)) return commitInPlace(dir, files, options);
  await io(`create ${parent}`, () => mkdir(parent, { recursive: true }));
  const temp = join(parent, `${prefix}${process.pid}`);
  try {
    await io(`prepare ${temp}`, () => rm(temp, { recursive: true, force: true }));
    const record = await commitInPlace(temp, files, options);
    await rename(temp, target).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      throw new SplitfitError('SPLITFIT_IO', `${dir} appeared while this run was writing it (another process?); nothing of this run was written there — rerun, or choose another folder`, { cause: err });
    });
    await io(`commit ${dir}`, () => syncDir(parent));
    return record;
  } catch (err) {
    await rm(temp, { recursive: true, force: true }).catch(() => undefined);
    if (err instanceof SplitfitError || err instanceof TypeError) throw err;
    throw new SplitfitError('SPLITFIT_IO', `cannot commit ${dir}: ${message(err)}`, { cause: err });
  }
}

/**
 * Removes the siblings of new-folder commits a kill interrupted (their process is gone), as far as it
 * can: one it may not remove (another user's, in a shared folder) is left, never a reason to fail.
 */
async function removeStaleSiblings(parent: string, prefix: string): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || isAlive(pid)) continue;
    await rm(join(parent, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** {@link commitFiles} into a folder that is (or is created) in place. */
async function commitInPlace(dir: string, files: ReadonlyMap<string, string | Uint8Array>, options: CommitOptions): Promise<CommitRecord> {
  await io(`create output folder ${dir}`, () => mkdir(dir, { recursive: true }));
  await recoverFolder(dir);
  const previous = await readRecord(dir);
  const kept = (options.keep ?? []).map((path) => {
    const entry = previous?.files.find((f) => f.path === path);
    if (!entry) throw new TypeError(`commitFiles: cannot keep ${path}: the folder's last commit has no such file`);
    return entry;
  });
  const staging = join(dir, STAGING);
  await io(`prepare ${staging}`, async () => {
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging);
    await writeDurable(join(staging, OWNER), String(process.pid));
  });
  const written: CommittedFile[] = [];
  for (const [path, data] of files) {
    assertRelative(path);
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const target = join(staging, path);
    await io(`write ${target}`, async () => {
      await mkdir(dirname(target), { recursive: true });
      await writeDurable(target, bytes);
    });
    written.push({ path, bytes: bytes.byteLength, sha256: sha256(bytes) });
  }
  const record: CommitRecord = { format: RECORD_FORMAT, files: [...written, ...kept.filter((k) => !files.has(k.path))] };
  await io(`write the commit record in ${staging}`, async () => {
    await syncDirs(staging, written.map((f) => f.path));
    const tmp = join(staging, `${STAGED_RECORD}.tmp`);
    await writeDurable(tmp, JSON.stringify(record, null, 2));
    await rename(tmp, join(staging, STAGED_RECORD));
    await syncDir(staging);
  });
  await rollForward(dir, record, previous);
  return record;
}

/**
 * Finishes a commit a crash interrupted after its record was written, and drops a staging folder
 * whose record was never written. A folder another live process is committing is left alone.
 */
export async function recoverFolder(dir: string): Promise<void> {
  const staging = join(dir, STAGING);
  const staged = await readJson<CommitRecord>(join(staging, STAGED_RECORD));
  if (staged === undefined) {
    if (!(await exists(staging))) return;
    await assertNotOwnedByLiveProcess(staging, dir);
    await io(`remove the unfinished ${staging}`, () => rm(staging, { recursive: true, force: true }));
    return;
  }
  await assertNotOwnedByLiveProcess(staging, dir);
  await rollForward(dir, checkRecord(staged, join(staging, STAGED_RECORD)), await readRecord(dir));
}

/** The folder's commit record, or `undefined` for a folder splitfit never committed (e.g. written by another tool). */
export async function readRecord(dir: string): Promise<CommitRecord | undefined> {
  const file = join(dir, COMMIT_FILE);
  const record = await readJson<CommitRecord>(file);
  return record === undefined ? undefined : checkRecord(record, file);
}

/**
 * Recovers an interrupted commit, then checks every file the record names against its size and hash.
 * Returns the record (`undefined` for a folder without one).
 */
export async function verifyFolder(dir: string): Promise<CommitRecord | undefined> {
  await recoverFolder(dir);
  const record = await readRecord(dir);
  if (!record) return undefined;
  for (const f of record.files) {
    const file = join(dir, f.path);
    const data = await readFile(file).catch((err: NodeJS.ErrnoException) => {
      throw new SplitfitError('SPLITFIT_MODEL_LOAD', `output folder ${dir} is incomplete: ${f.path} is listed in ${COMMIT_FILE} but cannot be read (${err.code ?? message(err)}); rerun train-head`, {
        cause: err,
      });
    });
    if (data.byteLength !== f.bytes || sha256(data) !== f.sha256) {
      throw new SplitfitError(
        'SPLITFIT_MODEL_LOAD',
        `output folder ${dir} is inconsistent: ${f.path} has ${data.byteLength} bytes${data.byteLength === f.bytes ? ' with another content' : ''}, ${COMMIT_FILE} says ${f.bytes}; it mixes two runs or was edited — rerun train-head`,
      );
    }
  }
  return record;
}

async function rollForward(dir: string, record: CommitRecord, previous: CommitRecord | undefined): Promise<void> {
  const staging = join(dir, STAGING);
  await io(`commit ${dir}`, async () => {
    const moved: string[] = [];
    for (const f of record.files) {
      const from = join(staging, f.path);
      if (!(await exists(from))) continue; // kept from the previous commit, or moved before a crash
      const to = join(dir, f.path);
      await mkdir(dirname(to), { recursive: true });
      await rename(from, to);
      moved.push(f.path);
    }
    await syncDirs(dir, moved);
    const now = new Set(record.files.map((f) => f.path));
    for (const old of previous?.files ?? []) if (!now.has(old.path)) await rm(join(dir, old.path), { force: true });
    await rename(join(staging, STAGED_RECORD), join(dir, COMMIT_FILE));
    await syncDir(dir);
    await rm(staging, { recursive: true, force: true });
  });
}

function checkRecord(record: CommitRecord, file: string): CommitRecord {
  const ok =
    typeof record === 'object' &&
    record !== null &&
    record.format === RECORD_FORMAT &&
    Array.isArray(record.files) &&
    record.files.every((f) => typeof f?.path === 'string' && Number.isSafeInteger(f.bytes) && typeof f.sha256 === 'string' && isRelative(f.path));
  if (!ok) throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${file} is not a splitfit commit record (${RECORD_FORMAT}); rerun train-head`);
  return record;
}

async function assertNotOwnedByLiveProcess(staging: string, dir: string): Promise<void> {
  const pid = Number(await readFile(join(staging, OWNER), 'utf8').catch(() => ''));
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return;
  if (isAlive(pid)) throw new SplitfitError('SPLITFIT_IO', `another splitfit process (pid ${pid}) is writing ${dir}; wait for it or choose another folder`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isRelative(path: string): boolean {
  return path !== '' && !path.startsWith('/') && !path.split('/').some((p) => p === '..' || p === '.' || p === '');
}

function assertRelative(path: string): void {
  if (!isRelative(path)) throw new TypeError(`commitFiles: file paths must be relative and inside the folder, got "${path}"`);
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readJson<T>(file: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SplitfitError('SPLITFIT_IO', `cannot read ${file}: ${message(err)}`, { cause: err });
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${file} is not valid JSON (${message(err)}); rerun train-head`, { cause: err });
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Flushes a directory's entries (a rename is durable only once its folder is). */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDirs(root: string, paths: readonly string[]): Promise<void> {
  const dirs = new Set([resolve(root), ...paths.map((p) => dirname(resolve(root, p)))]);
  for (const d of dirs) await syncDir(d);
}

async function io<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof SplitfitError || err instanceof TypeError) throw err;
    throw new SplitfitError('SPLITFIT_IO', `cannot ${what}: ${message(err)}`, { cause: err });
  }
}
