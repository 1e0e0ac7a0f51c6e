// Public API of splitfit. Only re-exports live here.
export { BACKEND_NAMES, type BackendChoice, type BackendName, fallbackNotice, probeBackend, resolveBackend } from './backend/resolve.js';
export { doctor, type DoctorReport } from './backend/doctor.js';
export { ERROR_CODES, type ErrorCode, isSplitfitError, SplitfitError } from './errors.js';

export { BUNDLED_MODELS, type BundledModel } from './model/bundled.js';
export { loadModel, saveModel } from './model/io.js';
export { isCut, modelGraph, validCuts } from './model/graph.js';
export { type Base, type Split, split, splitBase } from './model/split.js';
export { buildHead, type BuildHeadOptions, defaultHeadSpec, type HeadOp, parseHeadSpec } from './model/head-spec.js';
export { stitch, type StitchOptions } from './model/stitch.js';
export { exportBase, type ExportBaseOptions, type ExportedBase } from './model/fold.js';
export { installBatchNormCompat } from './model/bn-compat.js';
export { compileBase } from './model/compile/index.js';
export { fingerprint, type FingerprintInput } from './model/fingerprint.js';
export { inspectModel, type LayerInfo, type ModelInfo } from './model/inspect.js';
export { batchNormLayers, lockBatchNorm, movingStatsEqual, snapshotMovingStats, unlockBatchNorm } from './model/lock-batchnorm.js';

export { openDataSource, openFiles } from './data/sources.js';
export { type EntrySelector, type FeatureSet, loadFeatureSet } from './train/feature-set.js';
export { selectSamples, type SelectSamplesOptions } from './data/select.js';
export { FASHION_MNIST_CLASSES } from './data/idx.js';
export { decodeImage } from './data/decode.js';
export { PREPROCESS_PRESETS, parsePreprocess, preprocess } from './data/preprocess.js';
export type { DataSource, DuplicateSample, RawImage, Sample, Task } from './data/types.js';
export { TASKS } from './data/types.js';
export { LABEL_SEPARATOR } from './data/manifest.js';

export { FeatureCache } from './cache/feature-cache.js';
export { CACHE_FORMAT_VERSION, type FeatureDType } from './cache/codec.js';

export { type ExtractEvent, type ExtractOptions, type ExtractResult, extractFeatures, validateExtractOptions } from './extract/extract.js';
export { prepareBase, type PreparedBase, type PrepareOptions } from './extract/prepare.js';

export { trainHead, type TrainHeadResult } from './job/train-head.js';
export { type TrainEvent, type TrainHeadOptions, validateTrainHeadOptions } from './job/options.js';
export { type EpochLog, type History } from './train/fit.js';
export { COMMIT_FILE, type CommitRecord, verifyFolder } from './output/commit.js';
export { MANIFEST_FILE, MANIFEST_FORMAT, type SplitfitManifest } from './output/manifest.js';
export { OUTPUT_FILES, readOutputFolder } from './output/folder.js';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './infer/evaluate.js';
export { compareModes, type CompareModesOptions, type CompareModesResult } from './train/compare-modes.js';
export { classificationMetrics, type Metrics, rocAuc } from './train/metrics.js';
export { COMPILE_MIN_SAMPLES, loadPredictor, type Predictor, predictSamples, type PredictSamplesOptions } from './infer/predictor.js';
export { predict, type Prediction, type PredictOptions } from './infer/predict.js';
export {
  type ClassificationResult,
  classificationResult,
  type MultiLabelResult,
  multiLabelResult,
  type RegressionResult,
  regressionResult,
  type ResultSpec,
  type TaskResult,
  taskResult,
} from './infer/result.js';
export { type LabelMetrics, type MultiLabelMetrics, multiLabelMetrics, pearson, type RegressionMetrics, regressionMetrics, spearman, type TargetMetrics, tuneThresholds } from './train/task-metrics.js';
export { REGRESSION_LOSSES, type RegressionLoss } from './train/losses.js';
export {
  compareMultiLabelModes,
  compareRegressionModes,
  type LabelModes,
  MULTILABEL_RULE,
  type MultiLabelModes,
  REGRESSION_RULE,
  type RegressionModes,
} from './train/task-modes.js';
export { type ExportOptions, type ExportResult, exportModel, validateExportOptions } from './job/export.js';
export { QUANTIZE_CHOICES, type Quantize, quantizeWeights } from './model/quantize.js';
export { METADATA_KEY, MODEL_METADATA_FORMAT, type ModelMetadata, readModelMetadata } from './model/metadata.js';
export { modelMetadataOf } from './output/metadata.js';
