import * as tf from '@tensorflow/tfjs';
import { SplitfitError } from '../errors.js';

export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
export type BackendChoice = 'auto' | BackendName;
/** What a user may ask for: `auto` (tensorflow → wasm → cpu) or one backend. */
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', ...BACKEND_NAMES];

/** Why a backend could not be registered, keyed by name; filled by the probes below. */
export interface BackendProbe {
  name: BackendName;
  ok: boolean;
  reason?: string;
  /** TensorFlow version of the native library, for `tensorflow`. */
  tfVersion?: string;
}

export const NATIVE_HINT =
  'run `npm run native` in the splitfit folder (builds @tensorflow/tfjs-node offline from the tensorflow-cpu wheel)';

const probes = new Map<BackendName, Promise<BackendProbe>>();

/** Registers a backend with tfjs if its package loads; never switches the active backend. */
export function probeBackend(name: BackendName): Promise<BackendProbe> {
  let p = probes.get(name);
  if (!p) {
    p = register(name);
    probes.set(name, p);
  }
  return p;
}

async function register(name: BackendName): Promise<BackendProbe> {
  const active = tf.engine().backendName as string | null;
  try {
    if (name === 'tensorflow') {
      // libtensorflow logs start-up chatter to stderr unless told otherwise.
      process.env['TF_CPP_MIN_LOG_LEVEL'] ??= '2';
      const node = (await import('@tensorflow/tfjs-node')) as unknown as { version?: Record<string, string> };
      const binding = (tf.findBackend('tensorflow') as unknown as { binding?: { TF_Version?: string } } | null)?.binding;
      const tfVersion = binding?.TF_Version ?? node.version?.['tfjs-node'];
      return tfVersion === undefined ? { name, ok: true } : { name, ok: true, tfVersion };
    }
    if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    return { name, ok: tf.findBackendFactory(name) !== null };
  } catch (err) {
    const first = err instanceof Error ? err.message.split('\n')[0] ?? err.message : String(err);
    return { name, ok: false, reason: name === 'tensorflow' ? `${first} (${NATIVE_HINT})` : first };
  } finally {
    // tfjs-node selects itself on import; importing must not switch the backend by itself.
    if (active && tf.engine().backendName !== active) await tf.setBackend(active);
  }
}

/**
 * Activates a backend. `auto` takes the first that works of tensorflow → wasm → cpu.
 * An explicit choice that cannot load throws `SPLITFIT_BACKEND_UNAVAILABLE`.
 */
export async function resolveBackend(choice: BackendChoice = 'auto'): Promise<BackendName> {
  if (choice !== 'auto' && !(BACKEND_NAMES as readonly string[]).includes(choice)) {
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `unknown backend "${String(choice)}"; choose one of: ${BACKEND_CHOICES.join(', ')}`,
    );
  }
  const order: readonly BackendName[] = choice === 'auto' ? BACKEND_NAMES : [choice];
  const failures: string[] = [];
  for (const name of order) {
    const probe = await probeBackend(name);
    if (probe.ok && (await tf.setBackend(name))) {
      await tf.ready();
      if (name === 'cpu') silenceCpuBanner();
      return name;
    }
    failures.push(`${name}: ${probe.reason ?? 'failed to initialise'}`);
  }
  throw new SplitfitError('SPLITFIT_BACKEND_UNAVAILABLE', `no usable backend (${failures.join('; ')})`);
}

/**
 * tfjs's cpu backend prints "install our node backend" on its first tensor in Node: wrong advice for
 * splitfit (native TensorFlow comes from `npm run native`, and `fallbackNotice` says so in one line).
 * The banner is guarded by the backend's `firstUse` flag alone, so clearing it silences just that
 * banner (unlike `tf.enableProdMode()`, which silences every tfjs warning); a tfjs without the flag
 * is left alone.
 */
function silenceCpuBanner(): void {
  const backend = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
  if (backend && backend.firstUse === true) backend.firstUse = false;
}

/** One line for users when the fast path is missing; undefined when native runs. */
export async function fallbackNotice(active: BackendName): Promise<string | undefined> {
  if (active === 'tensorflow') return undefined;
  const native = await probeBackend('tensorflow');
  return native.ok ? undefined : `splitfit: native TensorFlow unavailable, running on ${active} (slower); ${NATIVE_HINT}`;
}

/**
 * A long call (extraction, training) on the pure-JavaScript cpu backend is slow enough to deserve a
 * word: the warning, or `undefined` on tensorflow and wasm.
 */
export function slowBackendWarning(): string | undefined {
  if (tf.getBackend() !== 'cpu') return undefined;
  return `running on the pure-JavaScript cpu backend, many times slower than native TensorFlow or wasm; resolveBackend('auto') picks them when installed (${NATIVE_HINT})`;
}

/** Says `slowBackendWarning` once per call: as a progress event when the caller listens, else on stderr. */
export function warnIfSlowBackend(onWarning: ((message: string) => void) | undefined): void {
  const message = slowBackendWarning();
  if (message === undefined) return;
  if (onWarning) onWarning(message);
  else process.emitWarning(message, 'SplitfitWarning');
}
