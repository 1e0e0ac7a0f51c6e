import { readdir, realpath, stat } from 'node:fs/promises';
import { extname, isAbsolute, join, relative, sep } from 'node:path';
import { SplitfitError } from '../errors.js';
import { fileSamples } from './file-sample.js';
import type { DataSource } from './types.js';

/**
 * File extensions listed as images: the formats the bundled sharp build decodes
 * (BMP is not among them; SVG is left out because its rendering depends on installed fonts).
 */
export const IMAGE_EXTENSIONS: readonly string[] = [
  '.png', '.jpg', '.jpeg', '.jpe', '.jfif', '.webp', '.gif', '.tif', '.tiff', '.avif',
];

/**
 * Extensions of images splitfit cannot use. They are listed as samples all the same, so that they
 * fail loudly when decoded (`SPLITFIT_DATA_DECODE`, or counted as failed with `--skip-bad`) instead of
 * silently vanishing from the data set.
 */
export const UNSUPPORTED_IMAGE_EXTENSIONS: readonly string[] = ['.bmp', '.dib', '.svg', '.heic', '.heif', '.ico', '.jp2', '.psd'];

const LISTED_EXTENSIONS: ReadonlySet<string> = new Set([...IMAGE_EXTENSIONS, ...UNSUPPORTED_IMAGE_EXTENSIONS]);

/**
 * A folder with one subfolder per class (nested folders inside a class folder belong to that class,
 * as in Keras' `image_dataset_from_directory`). With `labels: 'none'` every image below `root` is an
 * unlabeled sample. Hidden files and folders are ignored, and so are files that are not images; images in
 * a format splitfit cannot decode (see {@link UNSUPPORTED_IMAGE_EXTENSIONS}) are listed so that they fail loudly.
 *
 * Symbolic links to folders and files are followed (data often lives on another disk), but each folder is
 * listed once, by its real path:
 * - a link back to a folder being listed (`cats/up -> ..`), or to one that contains the data set, is a
 *   loop: skipped, with a note;
 * - a second path to a folder already listed for the same class is skipped, with a note;
 * - one folder reached from two classes is `SPLITFIT_DATA_CONFLICT` naming both paths, since either
 *   label would be a guess.
 * Folders that are not data are skipped, with one note naming them all: a LevelDB feature cache (it holds
 * `CURRENT`, `LOCK` and `MANIFEST-*`) and a splitfit output folder (it holds `splitfit.json`).
 */
export async function openFolder(root: string, labels: 'infer' | 'none'): Promise<DataSource> {
  const walk: Walk = { visited: new Map(), notes: [], notData: [] };
  const rootReal = await realDir(root);
  walk.visited.set(rootReal, { path: root, label: undefined });
  const chain = [rootReal]; // what a class folder is listed below
  if (labels === 'none') {
    const paths = (await listImages(root, undefined, walk, [])) ?? [];
    if (paths.length === 0) throw emptyError(`no images found in ${root} (looked for ${IMAGE_EXTENSIONS.join(' ')})`);
    const samples = await fileSamples(paths.map((path) => ({ path, label: undefined })));
    return { kind: 'folder', root, labels: [], samples, notes: notesOf(walk) };
  }

  const candidates = (await visibleEntries(root)).filter((e) => e.isDirectory).map((e) => e.name);
  candidates.sort();
  const entries: { path: string; label: string }[] = [];
  const classes: string[] = [];
  for (const label of candidates) {
    const dir = join(root, label);
    const paths = await listImages(dir, label, walk, chain);
    if (paths === undefined) continue; // not a class: a cache, an output folder or a loop (noted)
    if (paths.length === 0) {
      throw emptyError(
        `class folder '${label}' (${dir}) has no images (looked for ${IMAGE_EXTENSIONS.join(' ')}); add images or remove the folder`,
      );
    }
    classes.push(label);
    for (const path of paths) entries.push({ path, label });
  }
  if (classes.length === 0) {
    const loose = await listImages(root, undefined, walk, [], false);
    const hint =
      loose !== undefined && loose.length > 0
        ? `; it holds ${loose.length} image(s) directly: move them into one subfolder per class, or open it with labels: 'none'`
        : '';
    throw emptyError(`no class folders in ${root}: expected one subfolder per class${hint}`);
  }
  return { kind: 'folder', root, labels: classes, samples: await fileSamples(entries), notes: notesOf(walk) };
}

/** State of one listing: folders seen by real path, and what was left out. */
interface Walk {
  visited: Map<string, { path: string; label: string | undefined }>;
  notes: string[];
  /** Folders skipped because they are not data, e.g. `/photos/cache (a feature cache)`. */
  notData: string[];
}

function notesOf(walk: Walk): string[] {
  const notData =
    walk.notData.length === 0 ? [] : [`skipped ${walk.notData.length} folder(s) that are not data: ${walk.notData.join(', ')}`];
  return [...notData, ...walk.notes];
}

/**
 * Image files below `dir` (recursively unless told otherwise), sorted by path for a stable order.
 * `undefined` when `dir` is skipped: a loop, a second path, or a folder that is not data.
 * @param chain Real paths of the folders being listed, from the root down to `dir`'s parent (empty for the root).
 */
async function listImages(
  dir: string,
  label: string | undefined,
  walk: Walk,
  chain: readonly string[],
  recursive = true,
): Promise<string[] | undefined> {
  const isRoot = chain.length === 0;
  const real = await realDir(dir);
  if (!isRoot) {
    // Listing a folder that holds one being listed would list that one again, and so on.
    const looped = chain.find((c) => c === real || isInside(real, c));
    if (looped !== undefined) {
      const listing = walk.visited.get(looped)!.path;
      const how = looped === real ? `${real}, which is ${listing}` : `${real}, which holds ${listing}`;
      walk.notes.push(`skipped ${dir}: a link loop (it leads to ${how}, already being listed)`);
      return undefined;
    }
    const seen = walk.visited.get(real);
    if (seen !== undefined) {
      if (seen.label !== label) {
        throw new SplitfitError(
          'SPLITFIT_DATA_CONFLICT',
          `${dir} (class '${label}') and ${seen.path} (class '${seen.label}') are the same folder (${real}); ` +
            `a folder can belong to one class only: remove one of the links`,
        );
      }
      walk.notes.push(`skipped ${dir}: a second path to ${seen.path} (${real}), listed once`);
      return undefined;
    }
    walk.visited.set(real, { path: dir, label });
  }
  const entries = await visibleEntries(dir);
  if (!isRoot) {
    const notData = notDataKind(entries.map((e) => e.name));
    if (notData !== undefined) {
      walk.notData.push(`${dir} (${notData})`);
      return undefined;
    }
  }
  const found: string[] = [];
  const nextChain = [...chain, real];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) {
      if (recursive) found.push(...((await listImages(path, label, walk, nextChain)) ?? []));
    } else if (LISTED_EXTENSIONS.has(extname(entry.name).toLowerCase())) {
      found.push(path);
    }
  }
  return found.sort();
}

/** What a folder is when it is not data: splitfit's own cache or output, found by the files they hold. */
function notDataKind(names: readonly string[]): string | undefined {
  if (names.includes('splitfit.json')) return 'a splitfit output folder';
  if (names.includes('CURRENT') && names.includes('LOCK') && names.some((n) => n.startsWith('MANIFEST-'))) {
    return 'a LevelDB feature cache';
  }
  return undefined;
}

/** `inner` is strictly below `outer`. */
function isInside(outer: string, inner: string): boolean {
  const rel = relative(outer, inner);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

async function realDir(dir: string): Promise<string> {
  try {
    return await realpath(dir);
  } catch (err) {
    throw new SplitfitError('SPLITFIT_IO', `cannot resolve folder ${dir}: ${String(err)}`, { cause: err });
  }
}

/** Non-hidden entries of a folder; symbolic links are followed. */
async function visibleEntries(dir: string): Promise<{ name: string; isDirectory: boolean }[]> {
  let dirents;
  try {
    dirents = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new SplitfitError('SPLITFIT_IO', `cannot list folder ${dir}: ${String(err)}`, { cause: err });
  }
  const entries: { name: string; isDirectory: boolean }[] = [];
  for (const d of dirents) {
    if (d.name.startsWith('.')) continue;
    let isDirectory = d.isDirectory();
    if (d.isSymbolicLink()) {
      // A dangling link is skipped like any file that is not an image.
      const target = await stat(join(dir, d.name)).catch(() => undefined);
      if (!target) continue;
      isDirectory = target.isDirectory();
    }
    entries.push({ name: d.name, isDirectory });
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function emptyError(message: string): SplitfitError {
  return new SplitfitError('SPLITFIT_DATA_EMPTY', message);
}
