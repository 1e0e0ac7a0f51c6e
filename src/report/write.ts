import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { SplitfitError } from '../errors.js';
import { message, writeAtomic } from '../model/io.js';
import { commitFiles, readRecord, verifyFolder } from '../output/commit.js';
import { MANIFEST_FILE, parseManifest, type SplitfitManifest } from '../output/manifest.js';
import type { History } from '../train/fit.js';
import { type EvaluationSection, REPORT_FORMAT, REPORT_HTML, REPORT_JSON, type ReportData, sectionTitles, type TaskReportSection, withEvaluation, withTaskSection } from './data.js';
import { renderReport } from './html.js';
import { trainingReport } from './training.js';

export interface WrittenReport {
  file: string;
  /** `committed`: the report of a train-head output folder, re-committed with the rest kept; `file`: a standalone file. */
  as: 'committed' | 'file';
  sections: string[];
}

/**
 * Renders the report of an output folder again from its `report.json` (or, for a folder written before
 * reports existed, from its `history.json` and `splitfit.json`) and commits `report.html` with every
 * other file of the folder kept as it was.
 */
export async function regenerateReport(out: string): Promise<WrittenReport> {
  const dir = resolve(out);
  const data = await folderReport(dir);
  return commitReport(dir, data);
}

/**
 * Writes an evaluation into a report: into the report of the train-head output folder when `file` is
 * that folder's `report.html` (replacing an earlier evaluation section, keeping everything else),
 * else as a standalone report file, written atomically. `model` is the model.json evaluated, whose
 * folder's manifest and history give the standalone report its configuration and curves.
 */
export async function writeEvaluationReport(file: string, section: EvaluationSection | TaskReportSection, model: string | undefined): Promise<WrittenReport> {
  const target = resolve(file);
  const dir = dirname(target);
  // A multilabel or regression section goes beside the classification ones, replacing its own kind.
  const withSection = (d: ReportData): ReportData => ('task' in section ? withTaskSection(d, section) : withEvaluation(d, section));
  if (basename(target) === REPORT_HTML && (await readRecord(dir).catch(() => undefined)) !== undefined) {
    return commitReport(dir, withSection(await folderReport(dir)));
  }
  const modelDir = model === undefined ? undefined : dirname(resolve(model.endsWith('.json') ? model : join(model, 'model.json')));
  const base = modelDir === undefined ? undefined : await folderReport(modelDir).catch(() => undefined);
  const empty: ReportData = { format: REPORT_FORMAT, title: `splitfit evaluate: ${model ?? 'model'}`, createdAt: new Date().toISOString(), config: [['model', model ?? '—']], timings: [], evaluations: [], notes: [] };
  const data: ReportData = withSection(base ?? empty);
  const html = await renderReport({ ...data, title: base ? `${base.title} — evaluated` : data.title });
  await assertReportFolder(file);
  await writeAtomic(target, html);
  return { file: target, as: 'file', sections: sectionTitles(data) };
}

/**
 * Fails with `SPLITFIT_IO` unless the folder of report file `file` exists: creating it would hide a
 * typo (and Node's recursive mkdir never returns under /proc). Checked before any work, and again
 * just before writing.
 */
export async function assertReportFolder(file: string): Promise<void> {
  const dir = dirname(resolve(file));
  const folder = await stat(dir).catch(() => undefined);
  if (!folder?.isDirectory()) throw new SplitfitError('SPLITFIT_IO', `report file ${file}: its folder ${dir} does not exist; create it or write the report elsewhere`);
}

async function commitReport(dir: string, data: ReportData): Promise<WrittenReport> {
  const record = (await readRecord(dir))!;
  const files = new Map([
    [REPORT_JSON, JSON.stringify(data, null, 2)],
    [REPORT_HTML, await renderReport(data)],
  ]);
  await commitFiles(dir, files, { keep: record.files.map((f) => f.path).filter((p) => !files.has(p)) });
  return { file: join(dir, REPORT_HTML), as: 'committed', sections: sectionTitles(data) };
}

/** A verified output folder's report data: its `report.json`, else one built from its history and manifest. */
async function folderReport(dir: string): Promise<ReportData> {
  const record = await verifyFolder(dir);
  if (!record) throw new SplitfitError('SPLITFIT_USAGE', `${dir} is not a train-head output folder (no splitfit.commit.json); pass the --out folder of train-head`);
  const has = (path: string): boolean => record.files.some((f) => f.path === path);
  if (has(REPORT_JSON)) {
    const data = await readJson<ReportData>(join(dir, REPORT_JSON));
    if (data.format !== REPORT_FORMAT) throw new SplitfitError('SPLITFIT_MODEL_LOAD', `${join(dir, REPORT_JSON)} has format ${JSON.stringify(data.format)}, expected ${REPORT_FORMAT}; rerun train-head`);
    return data;
  }
  if (!has(MANIFEST_FILE) || !has('history.json')) throw new SplitfitError('SPLITFIT_USAGE', `${dir} has no ${MANIFEST_FILE} and history.json: not a train-head output folder`);
  const manifest: SplitfitManifest = parseManifest(await readJson(join(dir, MANIFEST_FILE)), join(dir, MANIFEST_FILE));
  const history = await readJson<History>(join(dir, 'history.json'));
  return trainingReport({ manifest, history, rebuilt: true });
}

async function readJson<T>(file: string): Promise<T> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (err) {
    throw new SplitfitError('SPLITFIT_MODEL_LOAD', `cannot read ${file} (${message(err)}); rerun train-head`, { cause: err });
  }
}
