import type { SplitfitManifest } from '../output/manifest.js';
import type { History } from '../train/fit.js';
import { bestEpoch, type EvaluationSection, REPORT_FORMAT, type ReportData, type ReportHistory, type TaskReportSection } from './data.js';

export interface TrainingReportInput {
  manifest: SplitfitManifest;
  history: Pick<History, 'loss' | 'acc' | 'valLoss' | 'valAcc' | 'valAuc' | 'seconds'> & Partial<Pick<History, 'generations'>> & {
    /** Set when early stopping restored the weights of this (1-based) epoch. */
    bestEpoch?: number;
  };
  /** Wall time of the whole train-head job, when known. */
  jobSeconds?: number;
  /** The validation section (absent when the run had no validation data). */
  evaluation?: EvaluationSection;
  /** The validation section of a multilabel or regression run. */
  taskSection?: TaskReportSection;
  /** Rebuilt from `history.json` and `splitfit.json` of a folder written before reports: the predictions are gone. */
  rebuilt?: boolean;
  /** The search leaderboard, when train-head ran `--search`. */
  leaderboard?: ReportData['leaderboard'];
}

/** The report of a train-head run: configuration, timings, curves, and the validation section when there is one. */
export function trainingReport(input: TrainingReportInput): ReportData {
  const { manifest: m, history: h } = input;
  const t = m.training;
  const curves: ReportHistory = {
    loss: h.loss,
    acc: h.acc,
    ...(h.valLoss ? { valLoss: h.valLoss } : {}),
    ...(h.valAcc ? { valAcc: h.valAcc } : {}),
    ...(h.valAuc ? { valAuc: h.valAuc } : {}),
    seconds: h.seconds,
    ...bestEpoch(h),
    savedEpoch: typeof h.bestEpoch === 'number' && h.bestEpoch >= 1 && h.bestEpoch <= h.loss.length ? h.bestEpoch : h.loss.length,
  };
  const config: [string, string][] = [
    ['model', m.model],
    ['boundary', m.boundary],
    ['head', m.head],
    ['classes', m.labels.join(', ')],
    ['input', `${m.inputSize[0]}×${m.inputSize[1]}×${m.channels}, preprocess ${m.preprocess}`],
    ['features', m.featureShape.join('×')],
    ...(t
      ? ([
          ['epochs', String(t.epochs)],
          ['batch size', String(t.batchSize)],
          ['optimizer', `${t.optimizer}, learning rate ${t.learningRate}`],
          ['training samples', String(t.samples)],
          ['validation', t.validation === 'none' ? 'none' : `${t.validation === 'split' ? 'internal split' : 'separate data'}: ${t.validationSamples} samples`],
        ] as [string, string][])
      : []),
    ['seed', String(m.seed)],
    ['backend', m.backend],
    ...(m.data ? ([['data', m.data]] as [string, string][]) : []),
    ['features fingerprint', m.fingerprint],
  ];
  const epochSeconds = h.seconds.reduce((s, x) => s + x, 0);
  const waited = (h.generations ?? []).reduce((s, g) => s + g.waitedSeconds, 0);
  const timings: [string, string][] = [
    ...(input.jobSeconds === undefined ? [] : ([['train-head job', seconds(input.jobSeconds)]] as [string, string][])),
    ['epochs', `${seconds(epochSeconds)} for ${h.loss.length}`],
    ['mean epoch', seconds(h.loss.length ? epochSeconds / h.loss.length : 0)],
    ...((h.generations?.length ?? 0) > 1 ? ([['waited for refreshed views', `${seconds(waited)} over ${h.generations!.length - 1} refreshes`]] as [string, string][]) : []),
    ['written', m.createdAt],
  ];
  const notes =
    input.evaluation !== undefined || input.taskSection !== undefined
      ? []
      : input.rebuilt && (t === undefined || t.validation !== 'none')
        ? [
            'This report was rebuilt from history.json and splitfit.json: the validation predictions (confusion matrix, ' +
              'per-class table, misclassified samples) were not kept by the splitfit that wrote this folder. Rerun train-head, ' +
              'or add a held-out section with `splitfit evaluate --model <out>/model.json --data <held-out> --report <out>/report.html`.',
          ]
        : [
            'No validation data: this run trained on every cached sample, so there is no confusion matrix or per-class table here. ' +
              'Hold some out (validationSplit, --validation-split 0.2), pass validationData (--validation-data <spec>), ' +
              'or add a held-out section with `splitfit evaluate --model <out>/model.json --data <held-out> --report <out>/report.html`.',
          ];
  return {
    format: REPORT_FORMAT,
    title: `splitfit train-head: ${m.model} cut at ${m.boundary}, ${m.labels.length} ${m.task?.task === 'regress' ? 'targets' : m.task?.task === 'multilabel' ? 'labels' : 'classes'}`,
    ...(input.leaderboard ? { leaderboard: input.leaderboard } : {}),
    createdAt: m.createdAt,
    config,
    timings,
    history: curves,
    evaluations: input.evaluation ? [input.evaluation] : [],
    ...(input.taskSection ? { tasks: [input.taskSection] } : {}),
    notes,
  };
}

function seconds(s: number): string {
  return s < 10 ? `${s.toFixed(2)} s` : s < 600 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}
