import * as tf from '@tensorflow/tfjs';
import { BACKEND_NAMES, type BackendName, NATIVE_HINT, probeBackend, resolveBackend } from './resolve.js';

export interface DoctorReport {
  /** The backend `auto` resolves to. */
  backend: BackendName;
  available: BackendName[];
  native: { ok: boolean; tfVersion?: string; reason?: string; hint?: string };
  versions: { node: string; tfjs: string; splitfit: string };
  unavailable: { name: BackendName; reason: string }[];
}

export async function doctor(splitfitVersion: string): Promise<DoctorReport> {
  const results = await Promise.all(BACKEND_NAMES.map((n) => probeBackend(n)));
  const native = results.find((r) => r.name === 'tensorflow')!;
  const backend = await resolveBackend('auto');
  return {
    backend,
    available: results.filter((r) => r.ok).map((r) => r.name),
    native: native.ok
      ? { ok: true, ...(native.tfVersion ? { tfVersion: native.tfVersion } : {}) }
      : { ok: false, reason: native.reason ?? 'unknown', hint: NATIVE_HINT },
    versions: { node: process.version, tfjs: tf.version.tfjs, splitfit: splitfitVersion },
    unavailable: results.filter((r) => !r.ok).map((r) => ({ name: r.name, reason: r.reason ?? 'unknown' })),
  };
}
