import * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';
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

function specError(spec: string, why: string): SplitfitError {
  return new SplitfitError('SPLITFIT_HEAD_SPEC', `invalid head spec "${spec}": ${why} (expected a ${SYNTAX})`);
}

/** The head used when none is given: pool a feature map, then classify. */
export function defaultHeadSpec(featureShape: readonly number[]): string {
  return featureShape.length === 3 ? 'gap,dense:N:softmax' : featureShape.length === 1 ? 'dense:N:softmax' : 'flatten,dense:N:softmax';
}

export function parseHeadSpec(spec: string): HeadOp[] {
  const parts = spec.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) throw specError(spec, 'empty element');
  return parts.map((part, i): HeadOp => {
    const [kind, ...args] = part.split(':');
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
        const n = units === 'N' ? 'N' : Number(units);
        if (rest.length > 0 || units === undefined || (n !== 'N' && (!Number.isInteger(n) || n <= 0))) {
          throw specError(spec, `\`${part}\`: dense takes dense:<positive integer|N>:<activation>`);
        }
        if (!(ACTIVATIONS as readonly string[]).includes(activation)) {
          throw specError(spec, `unknown activation "${activation}"; valid: ${ACTIVATIONS.join(', ')}`);
        }
        return { kind: 'dense', units: n, activation: activation as Activation };
      }
      case 'dropout': {
        const rate = Number(args[0]);
        if (args.length !== 1 || !(rate >= 0 && rate < 1)) throw specError(spec, `\`${part}\`: dropout takes a rate in [0, 1)`);
        return { kind: 'dropout', rate };
      }
      default:
        throw specError(spec, `unknown element "${kind ?? ''}"`);
    }
  });
}

export interface BuildHeadOptions {
  /** Head spec string or parsed ops. @default defaultHeadSpec(featureShape) */
  spec?: string | HeadOp[];
  /** Number of classes; replaces `N` in the spec and must match the head's output width. */
  numClasses: number;
  /** Seed for the new layers' initial weights. @default 0 */
  seed?: number;
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
  const ops = Array.isArray(options.spec) ? options.spec : parseHeadSpec(specText ?? defaultHeadSpec(featureShape));
  const shown = specText ?? ops.map((o) => o.kind).join(',');
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
    throw specError(shown, `the head must end in ${options.numClasses} outputs (one per class), got [${x.shape.slice(1).join(', ')}]; end it with dense:N:softmax`);
  }
  const head = tf.model({ inputs, outputs: x, name: 'splitfit_head' });
  // `original:` layers may be scale:false / center:false BN, which tfjs 4.22 cannot fit (bn-compat.ts).
  installBatchNormCompat(head);
  return head;
}
