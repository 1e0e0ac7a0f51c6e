/**
 * Key schema of the feature cache (one LevelDB per cache directory).
 *
 * Sublevels (abstract-level prefixes them as `!name!key`):
 * - `meta`    — JSON values: `format`, `holder`, `fingerprints` (registry), `augs` (hash → spec), and
 *               whatever other modules store with `putMeta`/`batchMeta` — the run records
 *               `run:<fingerprint>:<dataHash>` and the pointer `run:current` (`extract/run-meta.ts`).
 * - `samples` — JSON `{label?, source}` by sample id.
 * - `f:<fingerprint>` — one per fingerprint; `view`-encoded values (see `codec.ts`), keyed
 *               `${aug}!${generation}!${sampleId}!${view}`.
 *
 * `aug` is a short hash of the augmentation spec (`-` without augmentation); generation and
 * view are zero-padded to 6 digits so that lexicographic order equals numeric order and one
 * (aug, generation) pair is one contiguous key range.
 */
import { createHash } from 'node:crypto';
import { SplitfitError } from '../errors.js';

export const META_SUBLEVEL = 'meta';
export const SAMPLES_SUBLEVEL = 'samples';
export const FEATURES_SUBLEVEL_PREFIX = 'f:';

/** Meta keys owned by the cache itself. */
export const META_KEYS = {
  /** `{version, createdAt}` — the key schema / value format this cache was created with. */
  format: 'format',
  /** `{pid, command, startedAt, readOnly}` of the process that last opened the cache for writing. */
  holder: 'holder',
  /** Sorted array of fingerprints that have (or had) a features sublevel. */
  fingerprints: 'fingerprints',
  /** Object mapping aug hash → augmentation spec, so entries can report their spec. */
  augs: 'augs',
} as const;

/** Name of the sidecar file, next to LevelDB's files, that names the process holding the lock. */
export const HOLDER_FILE = 'splitfit-holder.json';

/** The `aug` key part of entries without augmentation. */
export const NO_AUG = '-';

/** Number of hex digits of the SHA-256 of an augmentation spec kept in keys. */
export const AUG_HASH_LENGTH = 12;

/** Width of the zero-padded generation and view key parts. */
export const INDEX_DIGITS = 6;

/** Largest generation or view index a key can hold. */
export const MAX_INDEX = 10 ** INDEX_DIGITS - 1;

const SEPARATOR = '!';
const FINGERPRINT_PATTERN = /^[0-9A-Za-z_.-]{1,128}$/;
const AUG_KEY_PATTERN = new RegExp(`^(-|[0-9a-f]{${AUG_HASH_LENGTH}})$`);
const INDEX_PATTERN = new RegExp(`^[0-9]{${INDEX_DIGITS}}$`);

/** The parts of one feature entry key. `augKey` is the hashed form (see {@link augKey}). */
export interface FeatureKeyParts {
  augKey: string;
  generation: number;
  sampleId: string;
  view: number;
}

/** A `[gte, lt)` key range inside a features sublevel. */
export interface KeyRange {
  gte: string;
  lt: string;
}

/**
 * Checks a fingerprint: 1–128 characters of `[0-9A-Za-z_.-]` (a hex SHA-256 fits).
 * @throws TypeError otherwise — fingerprints come from code, not from users.
 */
export function assertFingerprint(fingerprint: string): void {
  if (typeof fingerprint !== 'string' || !FINGERPRINT_PATTERN.test(fingerprint)) {
    throw new TypeError(
      `fingerprint must be 1–128 characters of [0-9A-Za-z_.-] (a hex SHA-256), received ${JSON.stringify(fingerprint)}`,
    );
  }
}

/**
 * Checks a sample id: a non-empty string of at most 256 printable ASCII characters without `!`.
 * @throws TypeError otherwise.
 */
export function assertSampleId(sampleId: string): void {
  if (typeof sampleId !== 'string' || sampleId.length === 0 || sampleId.length > 256 || !/^[\x22-\x7e]+$/.test(sampleId)) {
    throw new TypeError(
      `sample id must be 1–256 printable ASCII characters without "!" or spaces (a content hash), received ${JSON.stringify(sampleId)}`,
    );
  }
}

/**
 * Checks a generation or view index: an integer in [0, {@link MAX_INDEX}].
 * @throws TypeError otherwise.
 */
export function assertIndex(name: 'generation' | 'view', value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_INDEX) {
    throw new TypeError(`${name} must be an integer in [0, ${MAX_INDEX}], received ${String(value)}`);
  }
}

/** Hex digits of the short fingerprint every message prints. */
export const SHORT_FINGERPRINT_LENGTH = 12;

/** Fewest characters a fingerprint prefix must have to be taken as one (4 hex = 65,536 values). */
export const MIN_FINGERPRINT_PREFIX = 4;

/** The short form of a fingerprint in messages and tables: its first 12 characters (and a derived namespace's suffix). */
export function shortFingerprint(fingerprint: string): string {
  // A derived namespace (`<fingerprint>.gap`, cache/pooled.ts) keeps its suffix, or it would read as its maps.
  const dot = fingerprint.indexOf('.', SHORT_FINGERPRINT_LENGTH);
  return fingerprint.slice(0, SHORT_FINGERPRINT_LENGTH) + (dot === -1 ? '' : fingerprint.slice(dot));
}

/**
 * The one fingerprint among `known` that starts with `prefix` (a whole fingerprint is its own
 * prefix). `what` names the thing in messages, e.g. "--fingerprint" or "the cache".
 *
 * @returns `undefined` when none matches (the caller words "not found" in its own terms).
 * @throws SplitfitError `SPLITFIT_USAGE` when the prefix is shorter than
 *   {@link MIN_FINGERPRINT_PREFIX} characters, is not a fingerprint's characters, or matches
 *   more than one (the message lists the matches).
 */
export function matchFingerprint(prefix: string, known: Iterable<string>, what = 'fingerprint'): string | undefined {
  if (typeof prefix !== 'string' || !FINGERPRINT_PATTERN.test(prefix) || prefix.length < MIN_FINGERPRINT_PREFIX) {
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `${what} must be a fingerprint or a unique prefix of at least ${MIN_FINGERPRINT_PREFIX} of its characters, received ${JSON.stringify(prefix)}; ` +
        '`splitfit cache stats` lists the cached fingerprints',
    );
  }
  const matches = [...new Set(known)].filter((fp) => fp.startsWith(prefix)).sort();
  if (matches.length > 1) {
    throw new SplitfitError(
      'SPLITFIT_USAGE',
      `${what} "${prefix}" matches ${matches.length} fingerprints: ${matches.map(shortFingerprint).join(', ')}; give more characters`,
    );
  }
  return matches[0];
}

/** Sublevel name of a fingerprint's features: `f:<fingerprint>`. */
export function featuresSublevelName(fingerprint: string): string {
  assertFingerprint(fingerprint);
  return FEATURES_SUBLEVEL_PREFIX + fingerprint;
}

/** The fingerprint of a features sublevel name, or `undefined` when it is not one. */
export function parseFeaturesSublevelName(name: string): string | undefined {
  if (!name.startsWith(FEATURES_SUBLEVEL_PREFIX)) return undefined;
  const fingerprint = name.slice(FEATURES_SUBLEVEL_PREFIX.length);
  return FINGERPRINT_PATTERN.test(fingerprint) ? fingerprint : undefined;
}

/**
 * Key part of an augmentation spec: the first {@link AUG_HASH_LENGTH} hex digits of its
 * SHA-256, or {@link NO_AUG} for no augmentation (`undefined` or an empty spec). The spec is
 * hashed as given; callers pass the canonical spec string.
 */
export function augKey(spec: string | undefined): string {
  if (spec === undefined || spec === '') return NO_AUG;
  if (typeof spec !== 'string') throw new TypeError(`augmentation spec must be a string, received ${typeof spec}`);
  return createHash('sha256').update(spec, 'utf8').digest('hex').slice(0, AUG_HASH_LENGTH);
}

/** Zero-pads a generation or view index to {@link INDEX_DIGITS} digits. */
export function padIndex(n: number): string {
  return String(n).padStart(INDEX_DIGITS, '0');
}

/** Builds `${aug}!${generation}!${sampleId}!${view}`, validating every part. */
export function featureKey(parts: FeatureKeyParts): string {
  if (!AUG_KEY_PATTERN.test(parts.augKey)) {
    throw new TypeError(`aug key must be "${NO_AUG}" or ${AUG_HASH_LENGTH} hex digits, received ${JSON.stringify(parts.augKey)}`);
  }
  assertIndex('generation', parts.generation);
  assertSampleId(parts.sampleId);
  assertIndex('view', parts.view);
  return [parts.augKey, padIndex(parts.generation), parts.sampleId, padIndex(parts.view)].join(SEPARATOR);
}

/** Parses a feature entry key; `undefined` when it does not follow the schema. */
export function parseFeatureKey(key: string): FeatureKeyParts | undefined {
  const parts = key.split(SEPARATOR);
  if (parts.length !== 4) return undefined;
  const [aug, gen, sampleId, view] = parts as [string, string, string, string];
  if (!AUG_KEY_PATTERN.test(aug) || !INDEX_PATTERN.test(gen) || !INDEX_PATTERN.test(view) || sampleId.length === 0) {
    return undefined;
  }
  return { augKey: aug, generation: Number(gen), sampleId, view: Number(view) };
}

/**
 * Key range of all entries of one augmentation, or of one (augmentation, generation) pair.
 * `lt` is the prefix with its trailing `!` bumped to the next character (`"`).
 */
export function featureRange(aug: string, generation?: number): KeyRange {
  if (!AUG_KEY_PATTERN.test(aug)) {
    throw new TypeError(`aug key must be "${NO_AUG}" or ${AUG_HASH_LENGTH} hex digits, received ${JSON.stringify(aug)}`);
  }
  let prefix = aug + SEPARATOR;
  if (generation !== undefined) {
    assertIndex('generation', generation);
    prefix += padIndex(generation) + SEPARATOR;
  }
  return { gte: prefix, lt: prefix.slice(0, -1) + String.fromCharCode(SEPARATOR.charCodeAt(0) + 1) };
}
