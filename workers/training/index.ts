export { squeezenetBackbone, buildEmbeddingModel, preprocessForBackbone, EMBEDDING_OUTPUT, type BackboneSpec } from './backbone.ts';
export { loadMnist, MNIST_DATASET_ID } from './builtin-mnist.ts';
export { DatasetStore, type Dataset, type DatasetManifest, type ImageSource, type SkippedFile, type SkipReason } from './dataset-store.ts';
export { FeatureExtractor, type FeatureMatrix, type FeatureSpec } from './features.ts';
export { accuracy, classificationReport, confusionMatrix, logLoss, type ClassificationReport } from './metrics.ts';
export { MlpClassifier, DEFAULT_MLP_CONFIG, type MlpConfig, type EpochProgress, type FitOptions, type FitResult } from './mlp.ts';
export { buildClassifierModel, exportModel, modelConfigFor, PIXEL_INPUT, PROBABILITIES_OUTPUT, type ExportedModel } from './onnx-export.ts';
export { Rng } from './rng.ts';
export { expandSearch, gridSearch, parseSearchSpace, randomSearch, LOG_UNIFORM_KEYS, type ParamSet, type SearchRequest } from './search-space.ts';
export { explicitTestSplit, stratifiedHoldout, stratifiedKFold } from './splits.ts';
export {
  compareRuns,
  finishTraining,
  prepareTraining,
  runConfigFor,
  runTraining,
  trainOne,
  type PreparedTraining,
  type RunConfig,
  type RunResult,
  type TrainingContext,
  type TrainingProgress,
  type TrainingRequest,
  type TrainingResult,
} from './trainer.ts';
