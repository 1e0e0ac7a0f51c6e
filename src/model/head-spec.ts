import * as tf from '@tensorflow/tfjs';
import type { Task } from '../data/types.js';
import { closestMatches, SplitfitError } from '../errors.js';
import { installBatchNormCompat } from './bn-compat.js';
import { asFunctional, modelGraph } from './graph.js';
import { FEATURES_INPUT, remainderModel } from './split.js';

export type HeadOp =
  | { kind: 'original'; upTo: string }
  | { kind: 'gap' }
  | { kind: 'flatten' }
  | { kind: 'dense'; units: number | 'N'; activation: Activation }
  | { kind: 'dropout'; rate: number }
  | { kind: 'bn' };

export const ACTIVATIONS = ['linear', 'relu', 'relu6', 'elu', 'selu', 'sigmoid', 'softmax', 'softplus', 'softsign', 'tanh', 'swish', 'gelu'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

const SYNTAX = 'comma list of original:<layer>, gap, flatten, dense:<units|N>:<activation>, dropout:<rate>, bn';
const KINDS = ['original', 'gap', 'flatten', 'dense', 'dropout', 'bn'] as const;

/** Widest dense layer a spec may ask for: far above any head, far below an allocation that fails. */
export const MAX_UNITS = 65_536;
/** Most parameters a head's new layers may have together: 2^28 float32 weights are 1 GiB before the optimizer's copies. */
export const MAX_HEAD_PARAMS = 2 ** 28;
/** Most elements in one spec. */
export const MAX_HEAD_ELEMENTS = 64;
/** Longest spec text read (checked before splitting it). */
const MAX_SPEC_CHARS = 4096;

const UNITS = /^[1-9][0-9]*$/;
/** A plain decimal rate: `0.5`, `.5`, `5e-1`; no hex, no sign, no empty string (which Number() reads as 0). */
const DECIMAL = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

function specError(spec: string, why: string): SplitfitError {
  const shown = spec.length > 120 ? `${spec.slice(0, 120)}…` : spec;
  return new SplitfitError('SPLITFIT_HEAD_SPEC', `invalid head spec "${shown}": ${why} (expected a ${SYNTAX})`);
}

/** " (did you mean …?)" for a misspelt word, or "". */
function didYouMean(word: string, choices: readonly string[]): string {
  const near = closestMatches(word, choices);
  return near.length > 0 ? `; did you mean ${near.map((n) => `"${n}"`).join(', ')}?` : '';
}

/**
 * The output activation of each task's head: one class (`softmax`), independent labels (`sigmoid`,
 * trained with per-label binary cross-entropy), or values in the target's units (`linear`, trained on
 * standardised targets and carrying their scale after training; see `model/target-scale.ts`).
 */
export const OUTPUT_ACTIVATION: Readonly<Record<Task, Activation>> = { classify: 'softmax', multilabel: 'sigmoid', regress: 'linear' };

/** The head used when none is given: pool a feature map, then the task's output layer (`dense:N:softmax` to classify). */
export function defaultHeadSpec(featureShape: readonly number[], task: Task = 'classify'): string {
  const out = `dense:N:${OUTPUT_ACTIVATION[task]}`;
  return featureShape.length === 3 ? `gap,${out}` : featureShape.length === 1 ? out : `flatten,${out}`;
}

/**
 * A multilabel or regress head must end in the task's own output layer (`dense:N:sigmoid`,
 * `dense:N:linear`): a softmax would make the labels compete, a squashing activation would bound the
 * values and could not carry the target scale. Classification heads are not checked here (an
 * `original:` head ends in the source model's own classifier).
 */
export function checkHeadForTask(ops: readonly HeadOp[], task: Task, shown: string): void {
  if (task === 'classify') return;
  const last = ops.at(-1);
  const want = OUTPUT_ACTIVATION[task];
  if (last?.kind !== 'dense' || last.activation !== want) {
    const got = last === undefined ? 'nothing' : last.kind === 'dense' ? `dense:${last.units}:${last.activation}` : last.kind;
    throw specError(shown, `a ${task} head must end in dense:N:${want}, this one ends in ${got}`);
  }
}

export function parseHeadSpec(spec: string): HeadOp[] {
  if (typeof spec !== 'string') throw new TypeError(`parseHeadSpec: spec must be a string, got ${typeof spec}`);
  if (spec.length > MAX_SPEC_CHARS) throw specError(spec, `the spec is ${spec.length} characters long; at most ${MAX_SPEC_CHARS} are read`);
  const parts = spec.split(',').map((p) => p.trim());
  if (parts.some((p) => p === '')) throw specError(spec, 'empty element');
  if (parts.length > MAX_HEAD_ELEMENTS) throw specError(spec, `${parts.length} elements; a head has at most ${MAX_HEAD_ELEMENTS}`);
  return parts.map((part, i): HeadOp => {
    const [kind = '', ...args] = part.split(':');
    switch (kind) {
      case 'original':
        if (i !== 0) throw specError(spec, '`original:<layer>` must come first');
        if (args.length !== 1 || !args[0]) throw specError(spec, '`original` takes one layer name');
        return { kind: 'original', upTo: args[0] };
      case 'gap':
      case 'flatten':
      case 'bn':
        if (args.length > 0) throw specError(spec, `\`${kind}\` takes no arguments`);
        return { kind };
      case 'dense': {
        const [units, activation = 'linear', ...rest] = args;
        if (rest.length > 0 || units === undefined || (units !== 'N' && !UNITS.test(units))) {
          throw specError(spec, `\`${part}\`: dense takes dense:<positive integer|N>:<activation>`);
        }
        const n = units === 'N' ? 'N' : Number(units);
        if (n !== 'N' && n > MAX_UNITS) throw specError(spec, `\`${part}\`: ${units} units is more than ${MAX_UNITS}, the widest dense layer splitfit builds`);
        if (!(ACTIVATIONS as readonly string[]).includes(activation)) {
          throw specError(spec, `unknown activation "${activation}"${didYouMean(activation, ACTIVATIONS)}; valid: ${ACTIVATIONS.join(', ')}`);
        }
        return { kind: 'dense', units: n, activation: activation as Activation };
      }
      case 'dropout': {
        const [text = ''] = args;
        const rate = DECIMAL.test(text) ? Number(text) : Number.NaN;
        if (args.length !== 1 || !(rate >= 0 && rate < 1)) throw specError(spec, `\`${part}\`: dropout takes a rate in [0, 1), e.g. dropout:0.2`);
        return { kind: 'dropout', rate };
      }
      default:
        throw specError(spec, `unknown element "${kind}"${didYouMean(kind, KINDS)}`);
    }
  });
}

/**
 * Checks parsed ops a library caller passes in place of a spec string: the same bounds the parser
 * applies. Wrong types are programmer errors (TypeError); values out of range are SPLITFIT_HEAD_SPEC.
 */
export function validateHeadOps(ops: readonly HeadOp[], shown: string): HeadOp[] {
  if (ops.length > MAX_HEAD_ELEMENTS) throw specError(shown, `${ops.length} elements; a head has at most ${MAX_HEAD_ELEMENTS}`);
  return ops.map((op, i) => {
    if (typeof op !== 'object' || op === null || !(KINDS as readonly string[]).includes((op as { kind?: unknown }).kind as string)) {
      throw new TypeError(`head op ${i} must be {kind: ${KINDS.join(' | ')}, …}, got ${JSON.stringify(op)}`);
    }
    switch (op.kind) {
      case 'original':
        if (i !== 0) throw specError(shown, '`original:<layer>` must come first');
        if (typeof op.upTo !== 'string' || op.upTo === '') throw specError(shown, '`original` takes one layer name');
        break;
      case 'dense':
        if (op.units !== 'N' && !(Number.isInteger(op.units) && op.units > 0 && op.units <= MAX_UNITS)) {
          throw specError(shown, `dense units ${String(op.units)}: expected N or an integer in [1, ${MAX_UNITS}]`);
        }
        if (!(ACTIVATIONS as readonly string[]).includes(op.activation)) throw specError(shown, `unknown activation "${String(op.activation)}"; valid: ${ACTIVATIONS.join(', ')}`);
        break;
      case 'dropout':
        if (typeof op.rate !== 'number' || !(op.rate >= 0 && op.rate < 1)) throw specError(shown, `dropout rate ${String(op.rate)}: expected a number in [0, 1)`);
        break;
      default:
        break;
    }
    return op;
  });
}

/**
 * Refuses a head whose new layers would exceed MAX_HEAD_PARAMS, before any weight is allocated
 * (tfjs allocates a layer's kernel when it is applied, and a 10^12-element one crashes the process).
 * `inputShape` is what the first new layer reads (after `original:` layers); shapes that do not
 * fit an op are left to buildHead's own checks, which name the op.
 */
export function checkHeadSize(ops: readonly HeadOp[], inputShape: readonly (number | null)[], numClasses: number, shown: string): void {
  let shape = [...inputShape];
  let params = 0;
  for (const op of ops) {
    if (shape.some((d) => d === null)) return;
    const dims = shape as number[];
    if (op.kind === 'gap') {
      if (dims.length !== 3) return;
      shape = [dims[2]!];
    } else if (op.kind === 'flatten') {
      shape = [dims.reduce((a, b) => a * b, 1)];
    } else if (op.kind === 'dense') {
      if (dims.length !== 1) return;
      const units = op.units === 'N' ? numClasses : op.units;
      params += dims[0]! * units + units;
      shape = [units];
    } else if (op.kind === 'bn') {
      params += 4 * (dims.at(-1) ?? 0);
    }
    if (params > MAX_HEAD_PARAMS) {
      throw specError(
        shown,
        `the head's new layers would have ${params} parameters, more than ${MAX_HEAD_PARAMS} (2^28); use fewer dense units, or gap instead of flatten before dense`,
      );
    }
  }
}

export interface BuildHeadOptions {
  /** Head spec string or parsed ops. @default defaultHeadSpec(featureShape) */
  spec?: string | HeadOp[];
  /** Number of classes; replaces `N` in the spec and must match the head's output width. */
  numClasses: number;
  /** Seed for the new layers' initial weights. @default 0 */
  seed?: number;
  /** The task the head is for: its default spec and the output layer it must end in. @default 'classify' */
  task?: Task;
}

/**
 * Builds a trainable head that takes the base's features. `original:<layer>` starts it with
 * the source model's layers after the boundary up to `<layer>` (weights kept); new layers
 * get names prefixed `head_` and seeded initialisers, so the same seed gives the same head.
 */
export async function buildHead(
  source: tf.LayersModel,
  boundary: string,
  featureShape: readonly number[],
  options: BuildHeadOptions,
): Promise<tf.LayersModel> {
  const specText = typeof options.spec === 'string' ? options.spec : undefined;
  const task = options.task ?? 'classify';
  const shown = specText ?? (Array.isArray(options.spec) ? options.spec.map((o) => String((o as { kind?: unknown } | null)?.kind)).join(',') : defaultHeadSpec(featureShape, task));
  const ops = Array.isArray(options.spec) ? validateHeadOps(options.spec, shown) : parseHeadSpec(specText ?? defaultHeadSpec(featureShape, task));
  checkHeadForTask(ops, task, shown);
  const taken = new Set(asFunctional(source).layers.map((l) => l.name));
  const name = (base: string): string => {
    let n = `head_${base}`;
    for (let k = 1; taken.has(n); k++) n = `head_${base}_${k}`;
    taken.add(n);
    return n;
  };
  let seed = options.seed ?? 0;
  const init = (): ReturnType<typeof tf.initializers.glorotUniform> => tf.initializers.glorotUniform({ seed: seed++ });

  let inputs: tf.SymbolicTensor;
  let x: tf.SymbolicTensor;
  const [first] = ops;
  if (first?.kind === 'original') {
    const graph = modelGraph(asFunctional(source));
    if (!graph.index.has(first.upTo)) throw specError(shown, `no layer named "${first.upTo}" in the model`);
    const orig = await remainderModel(source, graph, boundary, [first.upTo], [...featureShape]);
    inputs = orig.inputs[0]!;
    x = orig.outputs[0]!;
  } else {
    inputs = tf.input({ shape: [...featureShape], name: FEATURES_INPUT });
    x = inputs;
  }
  checkHeadSize(ops, x.shape.slice(1), options.numClasses, shown);
  let denseCount = 0;
  for (const op of ops) {
    const rank = x.shape.length - 1;
    switch (op.kind) {
      case 'original':
        break;
      case 'gap':
        if (rank !== 3) throw specError(shown, `gap needs a feature map [h, w, c], got [${x.shape.slice(1).join(', ')}]`);
        x = tf.layers.globalAveragePooling2d({ name: name('gap') }).apply(x) as tf.SymbolicTensor;
        break;
      case 'flatten':
        x = tf.layers.flatten({ name: name('flatten') }).apply(x) as tf.SymbolicTensor;
        break;
      case 'dense': {
        if (rank !== 1) throw specError(shown, `dense needs a vector, got [${x.shape.slice(1).join(', ')}]; put gap or flatten first`);
        const units = op.units === 'N' ? options.numClasses : op.units;
        denseCount++;
        x = tf.layers
          .dense({ units, activation: op.activation, kernelInitializer: init(), name: name(`dense_${denseCount}`) })
          .apply(x) as tf.SymbolicTensor;
        break;
      }
      case 'dropout':
        // No seed: tfjs reuses a seeded dropout mask on every step, which would not be dropout.
        x = tf.layers.dropout({ rate: op.rate, name: name('dropout') }).apply(x) as tf.SymbolicTensor;
        break;
      case 'bn':
        x = tf.layers.batchNormalization({ name: name('bn') }).apply(x) as tf.SymbolicTensor;
        break;
    }
  }
  const width = x.shape.at(-1);
  if (x.shape.length !== 2 || width !== options.numClasses) {
    const per = task === 'classify' ? 'one per class' : task === 'multilabel' ? 'one per label' : 'one per target';
    throw specError(shown, `the head must end in ${options.numClasses} outputs (${per}), got [${x.shape.slice(1).join(', ')}]; end it with dense:N:${OUTPUT_ACTIVATION[task]}`);
  }
  const head = tf.model({ inputs, outputs: x, name: 'splitfit_head' });
  // `original:` layers may be scale:false / center:false BN, which tfjs 4.22 cannot fit (bn-compat.ts).
  installBatchNormCompat(head);
  return head;
}
