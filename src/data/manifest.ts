import { basename, dirname, extname, resolve } from 'node:path';
import { closestMatches, SplitfitError } from '../errors.js';
import { fileSamples } from './file-sample.js';
import { NotRegularFileError, readRegularFile } from './regular-file.js';
import type { DataSource, Task } from './types.js';

function didYouMean(word: string, choices: readonly string[]): string {
  const near = closestMatches(word, choices);
  return near.length > 0 ? `; did you mean ${near.map((n) => `"${n}"`).join(', ')}?` : '';
}

export const MANIFEST_EXTENSIONS: readonly string[] = ['.csv', '.jsonl', '.ndjson'];
const CSV_HEADER = 'path,label';
/** Separates the labels of a set in a CSV `labels` field: `cat|outdoor`. (`,` would need quoting, `;` is a CSV delimiter elsewhere.) */
export const LABEL_SEPARATOR = '|';
/** A plain decimal number: `12`, `-0.5`, `1e-3`, `.5`; no hex, no `Infinity`, no empty string (which Number() reads as 0). */
const NUMBER = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

/** A row's target before the task is settled: the text of a `label` column, a set, or numbers. */
type RowTarget =
  | { kind: 'label'; text: string }
  | { kind: 'labels'; set: string[] }
  | { kind: 'values'; values: number[] };

interface ManifestRow {
  path: string;
  line: number;
  label?: string;
  labelSet?: string[];
  values?: number[];
}

interface Parsed {
  task: Task;
  /** Regress: the target names, in column (or key) order. */
  targets: string[];
  rows: ManifestRow[];
}

/**
 * A CSV or JSONL manifest. Paths are relative to the manifest's folder unless absolute, and may point
 * anywhere the user can read (`../other/a.png`, `/data/a.png`): a manifest is the user's own list. Each
 * must be a regular file. Paths and labels are trimmed in both formats (`"smile "` is the class `smile`).
 * Blank lines are skipped.
 *
 * The target column decides the task (`task` forces another, see below):
 * - CSV `path,label`, JSONL `"label": "cat"` (a string or an integer: `3` is the class `'3'`) → `classify`;
 *   numeric labels stay class names.
 * - CSV `path,labels` with the labels of a set joined by `|` (`cat|outdoor`), JSONL `"labels": ["cat", "outdoor"]`
 *   (`[]`: none applies; a CSV field cannot be empty) → `multilabel`; `DataSource.labels` is every label named.
 * - CSV `path,target[,target2…]` (every column after `path` named `target…`), JSONL `"target": 12.5` or
 *   `"target": {"angle": 12.5, "scale": 2}` (the same keys on every line) → `regress`; the target names are the
 *   column names (or keys), the values finite decimals.
 *
 * Forcing: `regress` reads a `label` column (or JSONL `label`) as a number named `label`; `multilabel` reads a
 * `label` as a set joined by `|`; `classify` reads a `labels` set of exactly one label, or a single `target`
 * column's text, as the class. Bad targets are `SPLITFIT_DATA_DECODE` naming the file and line: an empty
 * target, a value that is not a finite number, an empty label in a set or a label twice, a label not in
 * `knownLabels`, lines of two kinds (`label` on one, `labels` on another) or a different set of target keys.
 */
export async function openManifest(file: string, labels: 'infer' | 'none', options: { task?: Task; knownLabels?: readonly string[] } = {}): Promise<DataSource> {
  let text: string;
  try {
    text = (await readRegularFile(file)).toString('utf8');
  } catch (err) {
    if (err instanceof NotRegularFileError) {
      throw new SplitfitError('SPLITFIT_DATA_DECODE', `manifest ${file} is ${err.kind}, not a regular file; give the manifest file itself`, { cause: err });
    }
    throw new SplitfitError('SPLITFIT_IO', `cannot read manifest ${file}: ${String(err)}`, { cause: err });
  }
  text = text.replace(/^\uFEFF/, '');
  const isCsv = extname(file).toLowerCase() === '.csv';
  const parsed = isCsv ? parseCsvManifest(text, file, labels, options.task) : parseJsonlManifest(text, file, labels, options.task);
  const { rows, task } = parsed;
  if (rows.length === 0) {
    throw new SplitfitError('SPLITFIT_DATA_EMPTY', `manifest ${file} lists no samples`);
  }
  if (task === 'multilabel' && options.knownLabels !== undefined) {
    const known = new Set(options.knownLabels);
    for (const r of rows) {
      const unknown = r.labelSet!.find((l) => !known.has(l));
      if (unknown !== undefined) {
        throw rowError(file, r.line, `label "${unknown}" is not one of the known labels (${[...known].join(', ')})${didYouMean(unknown, [...known])}; fix the label or retrain with it`);
      }
    }
  }
  const dir = dirname(file);
  const samples = await fileSamples(
    rows.map((r) => ({ path: resolve(dir, r.path), label: r.label, where: `${basename(file)} line ${r.line}` })),
  );
  rows.forEach((r, i) => {
    if (r.labelSet !== undefined) samples[i]!.labelSet = r.labelSet;
    if (r.values !== undefined) samples[i]!.values = r.values;
  });
  const names =
    labels === 'none' ? [] : task === 'classify' ? [...new Set(rows.map((r) => r.label!))].sort() : task === 'multilabel' ? [...new Set(rows.flatMap((r) => r.labelSet!))].sort() : parsed.targets;
  if (labels !== 'none' && task === 'multilabel' && names.length === 0) {
    throw new SplitfitError('SPLITFIT_DATA_EMPTY', `manifest ${file}: every label set is empty; a multilabel data set needs at least one label`);
  }
  return { kind: 'manifest', root: file, labels: names, samples, ...(labels === 'none' || task === 'classify' ? {} : { task }) };
}

/** The task a target column implies, and the names of its outputs for regression. */
function csvColumns(columns: string[], file: string, firstLine: string, forced: Task | undefined): { implied: 'label' | 'labels' | 'values'; targets: string[] } {
  const lower = columns.map((c) => c.toLowerCase());
  const expected = `expected the header "${CSV_HEADER}" (classify), "path,labels" (multilabel, labels joined by "${LABEL_SEPARATOR}") or "path,target[,target2…]" (regress) on line 1, found "${firstLine}"`;
  if (lower.length === 2 && lower[1] === 'label') return { implied: 'label', targets: [columns[1]!] };
  if (lower.length === 2 && lower[1] === 'labels') return { implied: 'labels', targets: [] };
  if (lower.length >= 2 && lower.slice(1).every((c) => c.startsWith('target'))) {
    const twice = columns.slice(1).find((c, i) => columns.slice(1).indexOf(c) !== i);
    if (twice !== undefined) throw new SplitfitError('SPLITFIT_USAGE', `manifest ${file}: the target column "${twice}" appears twice on line 1; give each target its own name`);
    if (forced === 'classify' && lower.length !== 2) {
      throw new SplitfitError('SPLITFIT_USAGE', `manifest ${file}: task classify reads one class column, but line 1 has ${lower.length - 1} target columns; use task regress`, { option: 'task' });
    }
    return { implied: 'values', targets: columns.slice(1) };
  }
  throw new SplitfitError('SPLITFIT_USAGE', `manifest ${file}: ${expected}`);
}

function parseCsvManifest(text: string, file: string, labels: 'infer' | 'none', forced: Task | undefined): Parsed {
  const records = parseCsv(text, file);
  const header = records.shift();
  const columns = header?.fields.map((f) => f.trim()) ?? [];
  const firstLine = text.split(/\r?\n/, 1)[0] ?? '';
  if (columns[0]?.toLowerCase() !== 'path') {
    throw new SplitfitError('SPLITFIT_USAGE', `manifest ${file}: expected the header "${CSV_HEADER}" on line 1 (or "path,labels", "path,target…"), found "${firstLine}"`);
  }
  const { implied, targets } = csvColumns(columns, file, firstLine, forced);
  const task = taskOf(implied, forced, file);
  const width = columns.length;
  const rows = records.map(({ fields, line }) => {
    if (fields.length !== width) {
      throw rowError(file, line, `expected ${width} fields (${columns.join(',')}), found ${fields.length}; quote paths that contain commas`);
    }
    const path = fields[0]!.trim();
    const cells = fields.slice(1).map((f) => f.trim());
    // A target column read as a class keeps its text: `12.50` is the class "12.50", not 12.5.
    const target: RowTarget =
      implied === 'values' && task !== 'classify'
        ? { kind: 'values', values: cells.map((c, j) => csvNumber(file, line, path, columns[j + 1]!, c)) }
        : implied === 'labels'
          ? { kind: 'labels', set: labels === 'none' ? [] : splitSet(file, line, path, cells[0]!) }
          : { kind: 'label', text: cells[0]! };
    return row(file, line, path, target, task, labels);
  });
  return { task, targets: task === 'regress' ? (implied === 'values' ? targets : [columns[1]!]) : [], rows };
}

function parseJsonlManifest(text: string, file: string, labels: 'infer' | 'none', forced: Task | undefined): Parsed {
  const rows: ManifestRow[] = [];
  let first: { kind: RowTarget['kind']; key: string; line: number; targets: string[] } | undefined;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw rowError(file, line, `not valid JSON (${(err as Error).message})`, err);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw rowError(file, line, 'expected an object like {"path": "a.png", "label": "cat"}');
    }
    const object = value as Record<string, unknown>;
    const path = object['path'];
    if (typeof path !== 'string') {
      throw rowError(file, line, `"path" must be a string, got ${describeJson(path)}`);
    }
    if (labels === 'none') {
      rows.push(row(file, line, path.trim(), { kind: 'label', text: '' }, 'classify', labels));
      return;
    }
    const keys = (['label', 'labels', 'target'] as const).filter((k) => k in object);
    if (keys.length > 1) throw rowError(file, line, `give one of "label", "labels" or "target", not ${keys.map((k) => `"${k}"`).join(' and ')}`);
    const key = keys[0] ?? 'label';
    // Forced regression reads a numeric "label" as the target named `label`.
    const raw_ = object[key];
    const target: RowTarget = forced === 'regress' && key === 'label' && typeof raw_ === 'number' ? { kind: 'label', text: String(raw_) } : jsonTarget(file, line, path.trim(), key, raw_);
    const targets = target.kind === 'values' ? (typeof object['target'] === 'object' ? Object.keys(object['target'] as object) : ['target']) : [];
    if (first === undefined) first = { kind: target.kind, key, line, targets };
    else if (first.key !== key) {
      throw rowError(file, line, `mixed kinds of target: this line has "${key}", line ${first.line} has "${first.key}"; one manifest holds one task`);
    } else if (target.kind === 'values' && targets.join('\u0000') !== first.targets.join('\u0000')) {
      throw rowError(file, line, `"target" has the keys [${targets.join(', ')}], line ${first.line} has [${first.targets.join(', ')}]; every line needs the same targets`);
    }
    rows.push({ path: path.trim(), line, ...(target.kind === 'label' ? { label: target.text } : {}), ...(target.kind === 'labels' ? { labelSet: target.set } : {}), ...(target.kind === 'values' ? { values: target.values } : {}) });
  });
  if (labels === 'none' || first === undefined) return { task: 'classify', targets: [], rows };
  const implied = first.kind;
  const task = taskOf(implied, forced, file);
  const out = rows.map((r) => {
    const t: RowTarget = r.labelSet !== undefined ? { kind: 'labels', set: r.labelSet } : r.values !== undefined ? { kind: 'values', values: r.values } : { kind: 'label', text: r.label! };
    if (task === 'classify' && t.kind === 'values') {
      if (t.values.length !== 1) throw rowError(file, r.line, `task classify reads one class, but "target" has ${t.values.length} values; use task regress`);
      return row(file, r.line, r.path, { kind: 'label', text: String(t.values[0]) }, task, labels);
    }
    return row(file, r.line, r.path, t, task, labels);
  });
  return { task, targets: task === 'regress' ? (implied === 'values' ? first.targets : ['label']) : [], rows: out };
}

/** The task the rows are read as: the forced one, when the target column can be read that way. */
function taskOf(implied: RowTarget['kind'], forced: Task | undefined, file: string): Task {
  const natural: Task = implied === 'label' ? 'classify' : implied === 'labels' ? 'multilabel' : 'regress';
  if (forced === undefined || forced === natural) return natural;
  const ok = implied === 'label' || (implied === 'labels' && forced === 'classify') || (implied === 'values' && forced === 'classify');
  if (!ok) {
    const column = implied === 'labels' ? 'a "labels" column' : 'target columns';
    throw new SplitfitError('SPLITFIT_USAGE', `manifest ${file} has ${column} (task ${natural}); task ${forced} cannot read them. Use task ${natural}, or write a "label" column`, { option: 'task' });
  }
  return forced;
}

/** A JSONL line's target under `key`, checked for its type. */
function jsonTarget(file: string, line: number, path: string, key: 'label' | 'labels' | 'target', value: unknown): RowTarget {
  if (key === 'label') {
    // An integer is a class number; a fraction, a huge number or any other type is a mistake, not a name.
    const text = typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : value;
    if (typeof text !== 'string') throw rowError(file, line, `"label" must be a string or an integer, got ${describeJson(value)}`);
    return { kind: 'label', text: text.trim() };
  }
  if (key === 'labels') {
    if (!Array.isArray(value) || !value.every((l) => typeof l === 'string')) {
      throw rowError(file, line, `"labels" must be a list of label names like ["cat", "outdoor"], got ${describeJson(value)}`);
    }
    return { kind: 'labels', set: checkSet(file, line, path, value.map((l: string) => l.trim())) };
  }
  const finite = (v: unknown, name: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw rowError(file, line, `target "${name}" of ${path} must be a finite number, got ${describeJson(v)}`);
    return v;
  };
  if (typeof value === 'number') return { kind: 'values', values: [finite(value, 'target')] };
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length > 0) {
    return { kind: 'values', values: Object.entries(value).map(([k, v]) => finite(v, k)) };
  }
  throw rowError(file, line, `"target" must be a number or an object of named numbers like {"angle": 12.5}, got ${describeJson(value)}`);
}

function csvNumber(file: string, line: number, path: string, column: string, cell: string): number {
  if (cell === '') throw rowError(file, line, `empty target "${column}" for ${path}`);
  const value = NUMBER.test(cell) ? Number(cell) : Number.NaN;
  if (!Number.isFinite(value)) throw rowError(file, line, `target "${column}" of ${path} must be a finite decimal number, got "${cell}"`);
  return value;
}

function splitSet(file: string, line: number, path: string, cell: string): string[] {
  if (cell === '') {
    throw rowError(file, line, `empty label set for ${path}; a CSV set names at least one label (write "[]" under "labels" in a JSONL manifest for an image none applies to)`);
  }
  return checkSet(file, line, path, cell.split(LABEL_SEPARATOR).map((l) => l.trim()));
}

/** A label set as stored: no empty label, none twice, sorted. */
function checkSet(file: string, line: number, path: string, set: string[]): string[] {
  if (set.some((l) => l === '')) throw rowError(file, line, `empty label in the set of ${path}; join labels with "${LABEL_SEPARATOR}" and no separator at either end`);
  const twice = set.find((l, i) => set.indexOf(l) !== i);
  if (twice !== undefined) throw rowError(file, line, `label "${twice}" appears twice in the set of ${path}`);
  return [...set].sort();
}

/** A JSON value as a row error names it: `null`, `the number 1.5`, `an array [1,2]`, `nothing (no such key)`. */
function describeJson(value: unknown): string {
  if (value === undefined) return 'nothing (no such key)';
  if (value === null) return 'null';
  const kind = Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `the ${typeof value}`;
  const text = JSON.stringify(value);
  return `${kind} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

/** A row with its target read as `task` (checked: no empty class, numbers finite). */
function row(file: string, line: number, path: string, target: RowTarget, task: Task, labels: 'infer' | 'none'): ManifestRow {
  if (path === '') throw rowError(file, line, 'empty path');
  if (labels === 'none') return { path, line };
  if (task === 'classify') {
    if (target.kind === 'labels') {
      if (target.set.length !== 1) throw rowError(file, line, `task classify reads one class, but the set of ${path} has ${target.set.length} labels; use task multilabel`);
      return { path, line, label: target.set[0]! };
    }
    const text = target.kind === 'label' ? target.text : String(target.values[0]);
    if (text === '') throw rowError(file, line, `empty label for ${path}`);
    return { path, line, label: text };
  }
  if (task === 'multilabel') {
    if (target.kind === 'labels') return { path, line, labelSet: target.set };
    if (target.kind === 'label') return { path, line, labelSet: splitSet(file, line, path, target.text) };
    throw new TypeError('row: numeric targets cannot be read as a label set');
  }
  if (target.kind === 'values') return { path, line, values: target.values };
  if (target.kind === 'label') return { path, line, values: [csvNumber(file, line, path, 'label', target.text)] };
  throw new TypeError('row: a label set cannot be read as numbers');
}

function rowError(file: string, line: number, reason: string, cause?: unknown): SplitfitError {
  return new SplitfitError(
    'SPLITFIT_DATA_DECODE',
    `manifest ${file} line ${line}: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

/** RFC 4180 records: quoted fields may hold commas, quotes (`""`) and newlines; each record keeps its first line number. */
function parseCsv(text: string, file: string): { fields: string[]; line: number }[] {
  const records: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let recordLine = 1;
  let blank = true;
  const endRecord = (): void => {
    if (!blank) records.push({ fields: [...fields, field], line: recordLine });
    fields = [];
    field = '';
    blank = true;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        if (c === '\n') line++;
        field += c;
      }
    } else if (c === '"' && field.trim() === '') {
      quoted = true;
      field = '';
      blank = false;
    } else if (c === ',') {
      fields.push(field);
      field = '';
      blank = false;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += c;
      if (c.trim() !== '') blank = false;
    }
  }
  if (quoted) throw rowError(file, recordLine, 'unterminated quoted field');
  endRecord();
  return records;
}
