import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { COMMIT_FILE, verifyFolder } from '../src/index.js';
import { commitFiles, readRecord, recoverFolder, sha256 } from '../src/output/commit.js';

const files = (tag: string): Map<string, string> =>
  new Map([
    ['weights.bin', `weights of ${tag}`],
    ['model.json', `{"run":"${tag}"}`],
    ['head/model.json', `{"head":"${tag}"}`],
  ]);

async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1));
  return out.sort();
}

/** A commit interrupted after its record was written: the staging folder as `commitFiles` leaves it at that moment. */
async function stageInterrupted(dir: string, next: Map<string, string>, moved: readonly string[]): Promise<void> {
  const staging = join(dir, '.splitfit-staging');
  await mkdir(join(staging, 'head'), { recursive: true });
  const record = { format: 'splitfit-commit/1', files: [...next].map(([path, data]) => ({ path, bytes: Buffer.byteLength(data), sha256: sha256(Buffer.from(data)) })) };
  for (const [path, data] of next) await writeFile(join(moved.includes(path) ? dir : staging, path), data);
  await writeFile(join(staging, 'COMMIT.json'), JSON.stringify(record));
}

describe('output folder commits (one step, verified by readers)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'splitfit-commit-')), 'out');
  });

  it('writes every file and a record naming each with its size and hash; a second commit replaces them and keeps foreign files', async () => {
    const first = await commitFiles(dir, new Map([...files('a'), ['extra-a.txt', 'only in a']]));
    expect(first.files.map((f) => f.path).sort()).toEqual(['extra-a.txt', 'head/model.json', 'model.json', 'weights.bin']);
    await writeFile(join(dir, 'NOTES.md'), 'the user wrote this');
    await commitFiles(dir, files('b'));
    expect(await listing(dir)).toEqual(['NOTES.md', COMMIT_FILE, 'head/model.json', 'model.json', 'weights.bin'].sort());
    expect(await readFile(join(dir, 'weights.bin'), 'utf8')).toBe('weights of b');
    expect(await readFile(join(dir, 'NOTES.md'), 'utf8')).toBe('the user wrote this');
    const record = await verifyFolder(dir);
    expect(record?.files.find((f) => f.path === 'weights.bin')).toEqual({ path: 'weights.bin', bytes: 12, sha256: sha256(Buffer.from('weights of b')) });
  });

  it('keeps files of the previous commit when asked (a regenerated report)', async () => {
    await commitFiles(dir, files('a'));
    await commitFiles(dir, new Map([['report.html', '<html>']]), { keep: ['model.json', 'weights.bin', 'head/model.json'] });
    expect((await verifyFolder(dir))!.files.map((f) => f.path).sort()).toEqual(['head/model.json', 'model.json', 'report.html', 'weights.bin']);
    expect(await readFile(join(dir, 'model.json'), 'utf8')).toBe('{"run":"a"}');
  });

  it('a kill before the record leaves the old folder whole; the next reader drops the staging folder', async () => {
    await commitFiles(dir, files('a'));
    const staging = join(dir, '.splitfit-staging');
    await mkdir(staging);
    await writeFile(join(staging, 'weights.bin'), 'half of b');
    await verifyFolder(dir);
    expect(await listing(dir)).toEqual([COMMIT_FILE, 'head/model.json', 'model.json', 'weights.bin'].sort());
    expect(await readFile(join(dir, 'weights.bin'), 'utf8')).toBe('weights of a');
  });

  for (const moved of [[], ['weights.bin'], ['weights.bin', 'model.json']]) {
    it(`a kill after the record, with ${moved.length} file(s) already renamed, is rolled forward to the new folder by the next reader`, async () => {
      await commitFiles(dir, new Map([...files('a'), ['only-a.txt', 'x']]));
      await stageInterrupted(dir, files('b'), moved);
      const record = await verifyFolder(dir);
      expect(record!.files.map((f) => f.path).sort()).toEqual(['head/model.json', 'model.json', 'weights.bin']);
      for (const [path, data] of files('b')) expect(await readFile(join(dir, path), 'utf8')).toBe(data);
      expect(await listing(dir)).toEqual([COMMIT_FILE, 'head/model.json', 'model.json', 'weights.bin'].sort()); // only-a.txt was a's
    });
  }

  it('a folder mixing two runs is an error naming the file, never a model', async () => {
    await commitFiles(dir, files('a'));
    await writeFile(join(dir, 'weights.bin'), 'weights of another run');
    await expect(verifyFolder(dir)).rejects.toMatchObject({ code: 'SPLITFIT_MODEL_LOAD', message: expect.stringMatching(/weights\.bin has 22 bytes, splitfit\.commit\.json says 12/) });
    await writeFile(join(dir, 'weights.bin'), 'weights of B');
    await expect(verifyFolder(dir)).rejects.toMatchObject({ code: 'SPLITFIT_MODEL_LOAD', message: expect.stringMatching(/with another content/) });
    await rm(join(dir, 'head', 'model.json'));
    await writeFile(join(dir, 'weights.bin'), 'weights of a');
    await expect(verifyFolder(dir)).rejects.toMatchObject({ code: 'SPLITFIT_MODEL_LOAD', message: expect.stringMatching(/head\/model\.json is listed/) });
  });

  it('a folder splitfit never committed has no record and is left alone', async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'model.json'), '{}');
    expect(await verifyFolder(dir)).toBeUndefined();
    expect(await readRecord(dir)).toBeUndefined();
  });

  it('refuses to recover a folder another live process is committing', async () => {
    await commitFiles(dir, files('a'));
    const staging = join(dir, '.splitfit-staging');
    await mkdir(staging);
    await writeFile(join(staging, 'OWNER'), String(process.ppid));
    await expect(recoverFolder(dir)).rejects.toMatchObject({ code: 'SPLITFIT_IO', message: expect.stringMatching(/another splitfit process/) });
  });

  it('a new folder appears whole, by one rename of a hidden sibling: a failure while staging it leaves no folder and no sibling', async () => {
    const parent = join(dir, '..');
    await expect(commitFiles(dir, new Map([...files('a'), ['../escape', 'x']]))).rejects.toThrow(TypeError);
    expect(await readdir(parent)).toEqual([]);
    await commitFiles(dir, files('a'));
    expect(await readdir(parent)).toEqual(['out']);
    expect(await listing(dir)).toEqual([COMMIT_FILE, 'head/model.json', 'model.json', 'weights.bin'].sort());
    // An existing empty folder (made by the user, maybe a mount point) is committed in place.
    const empty = join(parent, 'empty');
    await mkdir(empty);
    await commitFiles(empty, files('b'));
    expect(await verifyFolder(empty)).toMatchObject({ files: expect.arrayContaining([expect.objectContaining({ path: 'model.json' })]) });
    // So is a symlink to one (a rename could not replace it: ENOTDIR); the link stays a link.
    const real = join(parent, 'real');
    await mkdir(real);
    await symlink(real, join(parent, 'link'));
    await commitFiles(join(parent, 'link'), files('c'));
    expect((await lstat(join(parent, 'link'))).isSymbolicLink()).toBe(true);
    expect(await readFile(join(real, 'model.json'), 'utf8')).toBe('{"run":"c"}');
  });

  it("removes the sibling a killed commit left (its process is gone), not a live process's", async () => {
    const parent = join(dir, '..');
    const dead = join(parent, '.out.splitfit-new-999999999');
    const live = join(parent, `.out.splitfit-new-${process.ppid}`);
    await mkdir(join(dead, 'head'), { recursive: true });
    await mkdir(live);
    await commitFiles(dir, files('a'));
    expect((await readdir(parent)).sort()).toEqual(['.out.splitfit-new-' + String(process.ppid), 'out']);
    await rm(live, { recursive: true });
  });

  it('rejects file paths outside the folder (a programmer error)', async () => {
    await expect(commitFiles(dir, new Map([['../escape', 'x']]))).rejects.toThrow(TypeError);
  });
});
