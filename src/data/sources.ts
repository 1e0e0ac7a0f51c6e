import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { SplitfitError } from '../errors.js';
import { dedupeSamples } from './dedupe.js';
import { fileSamples } from './file-sample.js';
import { openFolder } from './folder.js';
import { NotIdxError, openIdx } from './idx.js';
import { MANIFEST_EXTENSIONS, openManifest } from './manifest.js';
import { TASKS, type DataSource, type OpenDataSourceOptions, type Task } from './types.js';

export type { DataSource, DataSourceKind, DuplicateSample, OpenDataSourceOptions, RawImage, Sample, Task } from './types.js';
export { TASKS } from './types.js';
export { LABEL_SEPARATOR } from './manifest.js';
export { FASHION_MNIST_CLASSES } from './idx.js';
export { IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_EXTENSIONS } from './folder.js';
export { selectSamples, type SelectSamplesOptions } from './select.js';

const LABEL_MODES = ['infer', 'none'] as const;

/**
 * Lists a data set. `spec` is one of:
 * - a folder with one subfolder per class (`kind: 'folder'`);
 * - a manifest `.csv` (header `path,label`) or `.jsonl` (`{"path", "label"}` per line), paths relative
 *   to the manifest's folder (`kind: 'manifest'`);
 * - an IDX images file, raw or gzip (`…-images-idx3-ubyte[.gz]`, labels found by replacing
 *   `images-idx3` with `labels-idx1`), or `images:labels` (`kind: 'idx'`).
 *
 * Every file is read once to compute its content-hash id; nothing is decoded or kept in memory. Only
 * regular files are read (links followed): a FIFO, device or socket listed as a sample is never read,
 * and its `load()` fails with `SPLITFIT_DATA_DECODE` naming it (a bad sample, like an undecodable image).
 * Files with the same bytes are one sample: the later ones are reported in `duplicates`, and the same
 * bytes under two labels are refused. What the listing skipped on purpose is in `notes`.
 * Errors: `SPLITFIT_IO` (spec not found), `SPLITFIT_USAGE` (not a data source, bad manifest header,
 * bad options), `SPLITFIT_DATA_EMPTY`, `SPLITFIT_DATA_DECODE` (missing listed file, a manifest or IDX file that is not a regular file,
 * malformed manifest row, damaged IDX, unused IDX label values), `SPLITFIT_DATA_CONFLICT` (the same image
 * under two labels, one folder in two classes).
 */
export async function openDataSource(spec: string, options: OpenDataSourceOptions = {}): Promise<DataSource> {
  const source = await openListed(spec, options);
  const { samples, duplicates } = dedupeSamples(source.samples);
  return { ...source, samples, duplicates, notes: source.notes ?? [] };
}

async function openListed(spec: string, options: OpenDataSourceOptions): Promise<DataSource> {
  const { labels, classNames, task } = validateOpenOptions(spec, options);
  const path = resolve(spec);
  const info = await statOrUndefined(path);
  const isManifest = info?.isFile() === true && MANIFEST_EXTENSIONS.includes(extname(path).toLowerCase());
  if (task !== undefined && task !== 'classify' && !isManifest) {
    throw new SplitfitError('SPLITFIT_USAGE', `task ${task} needs targets from a manifest (.csv or .jsonl); ${path} is a folder or IDX data, which hold one class per image`, { option: 'task' });
  }

  if (!info) {
    const colon = spec.lastIndexOf(':');
    if (colon > 0 && colon < spec.length - 1) {
      const images = resolve(spec.slice(0, colon));
      await mustExist(images, 'IDX images file');
      const labelsFile = resolve(spec.slice(colon + 1));
      if (labels === 'infer') await mustExist(labelsFile, 'IDX labels file');
      return openIdxOrUsage(images, { labels, classNames, labelsFile });
    }
    throw new SplitfitError('SPLITFIT_IO', `data source not found: ${path}`);
  }
  if (classNames && !info.isFile()) {
    throw new SplitfitError('SPLITFIT_USAGE', `classNames applies to IDX data only; ${path} is a folder`);
  }
  if (info.isDirectory()) return openFolder(path, labels);

  if (MANIFEST_EXTENSIONS.includes(extname(path).toLowerCase())) {
    if (classNames) throw new SplitfitError('SPLITFIT_USAGE', `classNames applies to IDX data only; ${path} is a manifest`);
    return openManifest(path, labels, { ...(task === undefined ? {} : { task }), ...(options.knownLabels === undefined ? {} : { knownLabels: options.knownLabels }) });
  }
  return openIdxOrUsage(path, { labels, classNames, labelsFile: undefined });
}

/**
 * Unlabeled samples for the given image files (`kind: 'files'`), e.g. the inputs of `predict`: one
 * sample per path, in order, duplicates included (a caller answering per file needs every one).
 */
export async function openFiles(paths: readonly string[]): Promise<DataSource> {
  if (paths.length === 0) throw new SplitfitError('SPLITFIT_DATA_EMPTY', 'no image files given');
  const samples = await fileSamples(paths.map((p) => ({ path: resolve(p), label: undefined })));
  return { kind: 'files', root: process.cwd(), labels: [], samples, duplicates: [], notes: [] };
}

function validateOpenOptions(
  spec: string,
  options: OpenDataSourceOptions,
): { labels: 'infer' | 'none'; classNames: readonly string[] | undefined; task: Task | undefined } {
  if (typeof spec !== 'string' || spec.trim() === '') {
    throw new SplitfitError('SPLITFIT_USAGE', `data source must be a folder, manifest or IDX path, got ${JSON.stringify(spec)}`);
  }
  const { labels = 'infer', classNames } = options;
  if (!(LABEL_MODES as readonly string[]).includes(labels)) {
    throw new SplitfitError('SPLITFIT_USAGE', `labels must be one of ${LABEL_MODES.join(', ')}, got ${JSON.stringify(labels)}`);
  }
  if (classNames !== undefined && (!Array.isArray(classNames) || classNames.some((n) => typeof n !== 'string'))) {
    throw new SplitfitError('SPLITFIT_USAGE', `classNames must be an array of strings, got ${JSON.stringify(classNames)}`);
  }
  const { task } = options;
  if (task !== undefined && !(TASKS as readonly string[]).includes(task)) {
    throw new SplitfitError('SPLITFIT_USAGE', `task must be one of ${TASKS.join(', ')}, got ${JSON.stringify(task)}`, { option: 'task' });
  }
  return { labels, classNames, task };
}

async function openIdxOrUsage(images: string, options: Parameters<typeof openIdx>[1]): Promise<DataSource> {
  try {
    return await openIdx(images, options);
  } catch (err) {
    if (!(err instanceof NotIdxError)) throw err;
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `${images} is not a data source: expected a folder of class subfolders, a manifest ` +
        `(${MANIFEST_EXTENSIONS.join(', ')}) or an IDX images file (raw or .gz)`,
      { cause: err },
    );
  }
}

async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new SplitfitError('SPLITFIT_IO', `cannot open data source ${path}: ${String(err)}`, { cause: err });
  }
}

async function mustExist(path: string, what: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new SplitfitError('SPLITFIT_IO', `${what} not found: ${path}`);
  if (!info.isFile()) throw new SplitfitError('SPLITFIT_DATA_DECODE', `${what} ${path} is not a regular file; give the file itself`);
}
