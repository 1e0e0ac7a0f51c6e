import type { Task } from './task.js';

/** Raw 8-bit pixels, row-major HWC (as stored in IDX files). */
export interface RawImage {
  raw: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/** One input image of a data source. Listing never keeps the image in memory; `load()` reads it. */
export interface Sample {
  /**
   * SHA-256 hex of the source bytes, so renamed files hit the feature cache and changed files miss.
   * For IDX images: of `idx:<height>x<width>x<channels>\n` followed by the raw pixel bytes.
   */
  id: string;
  /** Class name (task `classify`); `undefined` for unlabeled samples and the other tasks. */
  label?: string;
  /** Task `multilabel`: the sample's label set (unique names, sorted; may be empty: none applies). */
  labelSet?: string[];
  /** Task `regress`: the target values, one per `DataSource.labels` entry (the target names), finite. */
  values?: number[];
  /** Absolute file path, or `${idxImagesPath}#${index}` for an IDX image. */
  source: string;
  /** Encoded file bytes, or raw pixels for IDX. Throws `SPLITFIT_DATA_DECODE` when the file is gone or changed. */
  load(): Promise<Buffer | RawImage>;
}

export type DataSourceKind = 'folder' | 'manifest' | 'idx' | 'files';

export { TASKS, type Task } from './task.js';

export interface DataSource {
  kind: DataSourceKind;
  /** The resolved spec: the class folder root, the manifest file, the IDX images file, or the cwd for `files`. */
  root: string;
  /**
   * Output names; a sample's output index is the position of its name here. `classify`: class names,
   * sorted by name for folders and manifests, in numeric label order for IDX (so the index equals the
   * IDX label value). `multilabel`: every label named in a set, sorted. `regress`: the target names, in
   * column order. Empty when unlabeled.
   */
  labels: string[];
  /** What the samples' targets are. Absent means `classify` (and always is for folders, IDX and `files`). */
  task?: Task;
  samples: Sample[];
  /**
   * Files with the same bytes (so the same id) as an earlier sample, left out of `samples` so that an
   * image is extracted and trained on once. Each names the sample it copies in `duplicateOf`.
   * The same bytes under two different labels are never a duplicate: opening fails with
   * `SPLITFIT_DATA_CONFLICT` instead. Empty for `openFiles`, which keeps one sample per path given.
   */
  duplicates?: DuplicateSample[];
  /**
   * Things the listing left out on purpose, one line each, for the caller to show: a feature cache or a
   * splitfit output folder inside the data folder, a symbolic-link loop, a second path to a folder.
   */
  notes?: string[];
}

/** A file left out of a data source because an earlier sample has the same bytes. */
export interface DuplicateSample extends Sample {
  /** `source` of the sample kept in its place. */
  duplicateOf: string;
}

export interface OpenDataSourceOptions {
  /**
   * `infer`: labels come from class folders, the manifest's `label` column or the IDX labels file.
   * `none`: samples are unlabeled (a folder is then searched recursively; an IDX labels file is not needed).
   * @default 'infer'
   */
  labels?: 'infer' | 'none';
  /**
   * IDX only: names for the numeric labels, `classNames[i]` for label `i`
   * (e.g. `FASHION_MNIST_CLASSES`). Without it IDX labels are the digits `'0'`, `'1'`, ….
   * @default undefined
   */
  classNames?: readonly string[];
  /**
   * Manifests only: the task their targets are read as, instead of the one the columns imply (see
   * `openManifest`). Folders and IDX can only be `classify`.
   * @default the manifest's columns decide
   */
  task?: Task;
  /**
   * Manifests, task `multilabel` only: the labels a set may name (e.g. a trained model's labels, for
   * evaluation data); a set naming another is `SPLITFIT_DATA_DECODE` naming the row.
   * @default any label
   */
  knownLabels?: readonly string[];
}
