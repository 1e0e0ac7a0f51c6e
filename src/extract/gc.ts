import type { FeatureCache } from '../cache/feature-cache.js';
import type { GcResult } from '../cache/types.js';
import { fingerprintsInUse } from './in-use.js';
import { dropExtracting, type ExtractingMarker, listExtracting, listRuns, retireFingerprints, retireRun, type RunMeta, runReferences, runsToRetire } from './run-meta.js';

/** Options of {@link collectGarbage}. */
export interface CollectOptions {
  /** Only report what would be retired and dropped. @default false */
  dryRun?: boolean;
  /** Run ids or fingerprint prefixes to retire first (see `retireRun`). @default [] */
  retire?: readonly string[];
  /**
   * Also drop what interrupted extractions wrote (their markers first, then their entries as
   * orphans). Without it, gc keeps those entries so the rerun resumes from them.
   * @default false
   */
  dropInterrupted?: boolean;
}

/** Result of {@link collectGarbage}: the cache's gc result plus what was retired and why. */
export interface CollectResult extends GcResult {
  /** Run records retired on request (`retire`). */
  retired: RunMeta[];
  /** Fingerprints dropped because their model changed or vanished, with the reason. */
  stale: { fingerprint: string; reason: string }[];
  /** Markers of extractions that never recorded their run: kept (their entries too), or dropped with `dropInterrupted`. */
  interrupted: ExtractingMarker[];
}

/**
 * `cache gc`: retires the requested run records, drops the namespaces (and run records) of
 * fingerprints whose model no longer matches, then the entries and sample records no kept run
 * reads — except what an interrupted extraction wrote (its marker names it), unless told
 * `dropInterrupted`. Each step is one batch or repeats idempotently, in an order where a kill
 * between two steps leaves only more to collect next time: retired records and dropped markers
 * first (what they alone referenced becomes unreferenced), stale records before their
 * namespaces, entries before sample records.
 */
export async function collectGarbage(cache: FeatureCache, options: CollectOptions = {}): Promise<CollectResult> {
  const dryRun = options.dryRun ?? false;
  const retire = options.retire ?? [];
  const dropInterrupted = options.dropInterrupted ?? false;
  if (typeof dropInterrupted !== 'boolean') throw new TypeError(`collectGarbage option \`dropInterrupted\` must be a boolean, received ${typeof dropInterrupted}`);
  if (typeof dryRun !== 'boolean') throw new TypeError(`collectGarbage option \`dryRun\` must be a boolean, received ${typeof dryRun}`);
  if (!Array.isArray(retire)) throw new TypeError(`collectGarbage option \`retire\` must be an array of run ids, received ${typeof retire}`);
  const retired: RunMeta[] = [];
  for (const id of retire) retired.push(...(dryRun ? await runsToRetire(cache, id) : await retireRun(cache, id)));
  const use = await fingerprintsInUse(cache);
  const stale = new Set(use.stale.map((s) => s.fingerprint));
  if (!dryRun) await retireFingerprints(cache, [...stale]);
  const interrupted = dropInterrupted && !dryRun ? await dropExtracting(cache) : await listExtracting(cache);
  const keptMarkers = dropInterrupted ? [] : interrupted.filter((m) => !stale.has(m.fingerprint));
  const gone = new Set(retired.map((r) => r.runId));
  const kept = (await listRuns(cache)).runs.filter((r) => !gone.has(r.runId) && !stale.has(r.fingerprint));
  const result = await cache.gc(use.inUse, { dryRun, references: runReferences(kept, keptMarkers) });
  return { ...result, retired, stale: use.stale, interrupted };
}
