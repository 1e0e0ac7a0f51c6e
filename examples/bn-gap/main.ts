/**
 * npm run example:bn-gap -- [--classes a,b] [--per-class N] [--epochs E] [--seed S]
 *                           [--mode naive|splitfit|locked|all] [--batch-size B] [--lr X]
 *                           [--no-compare-modes] [--backend auto|tensorflow|wasm|cpu] [--json]
 *
 * Trains the same head on the same frozen MobileNetV2 three ways and shows the accuracy `fit`
 * reports next to the accuracy `predict` delivers on the same images. See docs/BATCHNORM.md.
 */
import { parseArgs } from 'node:util';
import { type BackendChoice, resolveBackend } from 'splitfit';
import { BN_GAP_MODES, type BnGapMode, DEFAULT_CLASSES, formatBnGap, runBnGap } from './bn-gap.js';

function usage(message: string): never {
  process.stderr.write(`bn-gap: ${message}\n`);
  process.exit(2);
}

function positiveInt(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) usage(`--${name} must be a positive integer, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        classes: { type: 'string' },
        'per-class': { type: 'string' },
        epochs: { type: 'string' },
        seed: { type: 'string' },
        mode: { type: 'string', default: 'all' },
        'batch-size': { type: 'string' },
        lr: { type: 'string' },
        'no-compare-modes': { type: 'boolean', default: false },
        backend: { type: 'string', default: 'auto' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    usage(err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    process.stdout.write(
      'npm run example:bn-gap -- [--classes a,b] [--per-class N] [--epochs E] [--seed S] [--mode naive|splitfit|locked|all]\n' +
        '                          [--batch-size B] [--lr X] [--no-compare-modes] [--backend auto|tensorflow|wasm|cpu] [--json]\n' +
        `defaults: --classes ${DEFAULT_CLASSES.join(',')} --per-class 100 --epochs 10 --seed 0 --mode all --batch-size 32 --lr 0.001\n`,
    );
    return;
  }
  const mode = values.mode!;
  if (mode !== 'all' && !(BN_GAP_MODES as readonly string[]).includes(mode)) usage(`--mode must be one of ${BN_GAP_MODES.join(', ')}, all; got ${mode}`);
  const modes: BnGapMode[] = mode === 'all' ? [...BN_GAP_MODES] : [mode as BnGapMode];
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  if (!Number.isSafeInteger(seed)) usage(`--seed must be an integer, got ${values.seed}`);
  const lr = values.lr === undefined ? 1e-3 : Number(values.lr);
  if (!(lr > 0)) usage(`--lr must be a positive number, got ${values.lr}`);
  const classes = values.classes === undefined ? DEFAULT_CLASSES : values.classes.split(',').map((c) => c.trim());
  if (classes.length !== 2) usage(`--classes needs exactly two Fashion-MNIST classes (the head is dense:2), got ${classes.length}: ${classes.join(',')}`);

  const backend = await resolveBackend(values.backend as BackendChoice);
  const json = values.json!;
  const started = performance.now();
  try {
    const result = await runBnGap({
      classes,
      perClass: positiveInt('per-class', values['per-class'], 100),
      epochs: positiveInt('epochs', values.epochs, 10),
      batchSize: positiveInt('batch-size', values['batch-size'], 32),
      learningRate: lr,
      seed,
      modes,
      compareModes: !values['no-compare-modes'],
      ...(json ? {} : { onProgress: (m: string) => process.stderr.write(`${m}\n`) }),
    });
    if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else process.stdout.write(`${formatBnGap(result)}\n\nbackend ${backend}, total ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: e.code ?? 'SPLITFIT_ERROR', message: e.message ?? String(err) } })}\n`);
    else process.stderr.write(`bn-gap: ${e.message ?? String(err)}\n`);
    process.exitCode = 1;
  }
}

await main();
