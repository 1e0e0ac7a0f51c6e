import { basename, dirname, extname, resolve } from 'node:path';
import { SplitfitError } from '../errors.js';
import { fileSamples } from './file-sample.js';
import { NotRegularFileError, readRegularFile } from './regular-file.js';
import type { DataSource } from './types.js';

export const MANIFEST_EXTENSIONS: readonly string[] = ['.csv', '.jsonl', '.ndjson'];
const CSV_HEADER = 'path,label';

interface ManifestRow {
  path: string;
  label: string | undefined;
  line: number;
}

/**
 * A CSV (`path,label` header) or JSONL (`{"path": …, "label": …}` per line) manifest.
 * Paths are relative to the manifest's folder unless absolute, and may point anywhere the user can
 * read (`../other/a.png`, `/data/a.png`): a manifest is the user's own list. Each must be a regular file.
 * Paths and labels are trimmed in both formats (`"smile "` is the class `smile`). A JSONL label is a
 * string or an integer (`3` is the class `'3'`); any other type is `SPLITFIT_DATA_DECODE` naming the line.
 * Blank lines are skipped.
 */
export async function openManifest(file: string, labels: 'infer' | 'none'): Promise<DataSource> {
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
  const rows = isCsv ? parseCsvManifest(text, file, labels) : parseJsonlManifest(text, file, labels);
  if (rows.length === 0) {
    throw new SplitfitError('SPLITFIT_DATA_EMPTY', `manifest ${file} lists no samples`);
  }
  const dir = dirname(file);
  const samples = await fileSamples(
    rows.map((r) => ({ path: resolve(dir, r.path), label: r.label, where: `${basename(file)} line ${r.line}` })),
  );
  const names = labels === 'none' ? [] : [...new Set(rows.map((r) => r.label!))].sort();
  return { kind: 'manifest', root: file, labels: names, samples };
}

function parseCsvManifest(text: string, file: string, labels: 'infer' | 'none'): ManifestRow[] {
  const records = parseCsv(text, file);
  const header = records.shift();
  const found = header?.fields.map((f) => f.trim().toLowerCase()).join(',');
  if (found !== CSV_HEADER) {
    const firstLine = text.split(/\r?\n/, 1)[0] ?? '';
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `manifest ${file}: expected the header "${CSV_HEADER}" on line 1, found "${firstLine}"`,
    );
  }
  return records.map(({ fields, line }) => {
    if (fields.length !== 2) {
      throw rowError(file, line, `expected 2 fields (${CSV_HEADER}), found ${fields.length}; quote paths that contain commas`);
    }
    return row(file, line, fields[0]!.trim(), fields[1]!.trim(), labels);
  });
}

function parseJsonlManifest(text: string, file: string, labels: 'infer' | 'none'): ManifestRow[] {
  const rows: ManifestRow[] = [];
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
    const { path, label } = value as { path?: unknown; label?: unknown };
    if (typeof path !== 'string') {
      throw rowError(file, line, `"path" must be a string, got ${describeJson(path)}`);
    }
    if (labels === 'none') {
      rows.push(row(file, line, path.trim(), '', labels));
      return;
    }
    // An integer is a class number; a fraction, a huge number or any other type is a mistake, not a name.
    const text = typeof label === 'number' && Number.isSafeInteger(label) ? String(label) : label;
    if (typeof text !== 'string') {
      throw rowError(file, line, `"label" must be a string or an integer, got ${describeJson(label)}`);
    }
    rows.push(row(file, line, path.trim(), text.trim(), labels));
  });
  return rows;
}

/** A JSON value as a row error names it: `null`, `the number 1.5`, `an array [1,2]`, `nothing (no such key)`. */
function describeJson(value: unknown): string {
  if (value === undefined) return 'nothing (no such key)';
  if (value === null) return 'null';
  const kind = Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `the ${typeof value}`;
  const text = JSON.stringify(value);
  return `${kind} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

function row(file: string, line: number, path: string, label: string, labels: 'infer' | 'none'): ManifestRow {
  if (path === '') throw rowError(file, line, 'empty path');
  if (labels === 'none') return { path, label: undefined, line };
  if (label === '') throw rowError(file, line, `empty label for ${path}`);
  return { path, label, line };
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
