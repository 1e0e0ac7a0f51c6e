import { readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
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
 */
export async function openFolder(root: string, labels: 'infer' | 'none'): Promise<DataSource> {
  if (labels === 'none') {
    const paths = await listImages(root);
    if (paths.length === 0) throw emptyError(`no images found in ${root} (looked for ${IMAGE_EXTENSIONS.join(' ')})`);
    return { kind: 'folder', root, labels: [], samples: await fileSamples(paths.map((path) => ({ path, label: undefined }))) };
  }

  const classes = (await visibleEntries(root)).filter((e) => e.isDirectory).map((e) => e.name);
  if (classes.length === 0) {
    const loose = await listImages(root, false);
    const hint =
      loose.length > 0
        ? `; it holds ${loose.length} image(s) directly: move them into one subfolder per class, or open it with labels: 'none'`
        : '';
    throw emptyError(`no class folders in ${root}: expected one subfolder per class${hint}`);
  }
  classes.sort();

  const entries: { path: string; label: string }[] = [];
  for (const label of classes) {
    const dir = join(root, label);
    const paths = await listImages(dir);
    if (paths.length === 0) {
      throw emptyError(
        `class folder '${label}' (${dir}) has no images (looked for ${IMAGE_EXTENSIONS.join(' ')}); add images or remove the folder`,
      );
    }
    for (const path of paths) entries.push({ path, label });
  }
  return { kind: 'folder', root, labels: classes, samples: await fileSamples(entries) };
}

/** Image files below `dir` (recursively unless told otherwise), sorted by path for a stable order. */
async function listImages(dir: string, recursive = true): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await visibleEntries(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) {
      if (recursive) found.push(...(await listImages(path)));
    } else if (LISTED_EXTENSIONS.has(extname(entry.name).toLowerCase())) {
      found.push(path);
    }
  }
  return found.sort();
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
