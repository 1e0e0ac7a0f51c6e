import { SplitfitError } from '../errors.js';
import { digestSeed, rng } from '../random.js';

/**
 * Augmentations applied to decoded uint8 pixels (HWC, already at the model's input size) before
 * preprocessing and the base. Each is deterministic in (seed, generation, sample id, view).
 */
export interface AugmentSpec {
  /** Random horizontal / vertical flips (each with probability ½). */
  flipH?: boolean;
  flipV?: boolean;
  /** Random crop of this fraction of each side, resized back. In (0, 1]. */
  crop?: number;
  /** Random rotation in [-deg, +deg], white fill. */
  rotate?: number;
  /** Brightness shift in [-b, +b] × 255. */
  brightness?: number;
  /** Contrast factor in [1-c, 1+c] around the image mean. */
  contrast?: number;
  /** Gaussian noise with this standard deviation × 255. */
  noise?: number;
}

const CANONICAL_PREFIX = 'augment/v1:';
const SYNTAX = 'flip:h|v|hv, crop:<0..1>, rotate:<degrees>, brightness:<0..1>, contrast:<0..1>, noise:<0..1>';

function fail(spec: string, why: string): SplitfitError {
  return new SplitfitError('SPLITFIT_USAGE', `invalid --augment "${spec}": ${why} (expected a comma list of ${SYNTAX})`);
}

/** Parses a CLI spec, or the canonical form recorded in a cache (`augment/v1:…`). */
export function parseAugmentSpec(spec: string): AugmentSpec {
  const out: AugmentSpec = {};
  const body = spec.startsWith(CANONICAL_PREFIX) ? spec.slice(CANONICAL_PREFIX.length) : spec;
  if (body.trim() === '') throw fail(spec, 'empty');
  for (const part of body.split(',').map((p) => p.trim())) {
    const [name, arg, ...rest] = part.split(':');
    if (rest.length > 0 || arg === undefined || arg === '') throw fail(spec, `"${part}" needs one argument`);
    if (name === 'flip') {
      if (!/^(h|v|hv|vh)$/.test(arg)) throw fail(spec, `flip takes h, v or hv, got "${arg}"`);
      if (arg.includes('h')) out.flipH = true;
      if (arg.includes('v')) out.flipV = true;
      continue;
    }
    const x = Number(arg);
    const bounds: Record<string, [number, number, boolean]> = {
      crop: [0, 1, true],
      rotate: [0, 180, true],
      brightness: [0, 1, true],
      contrast: [0, 1, true],
      noise: [0, 1, true],
    };
    const b = bounds[name ?? ''];
    if (!b) throw fail(spec, `unknown augmentation "${name}"`);
    if (!Number.isFinite(x) || x <= b[0] || x > b[1]) throw fail(spec, `${name} must be in (${b[0]}, ${b[1]}], got "${arg}"`);
    (out as Record<string, number>)[name!] = x;
  }
  return out;
}

/** One stable text per spec (order and spelling normalised): it names the cache namespace. */
export function canonicalAugmentSpec(spec: AugmentSpec): string {
  const parts: string[] = [];
  if (spec.flipH || spec.flipV) parts.push(`flip:${spec.flipH ? 'h' : ''}${spec.flipV ? 'v' : ''}`);
  for (const k of ['crop', 'rotate', 'brightness', 'contrast', 'noise'] as const) if (spec[k] !== undefined) parts.push(`${k}:${spec[k]}`);
  return `${CANONICAL_PREFIX}${parts.join(',')}`;
}

export interface ViewKey {
  seed: number;
  generation: number;
  sampleId: string;
  view: number;
}

/** A PRNG seeded by the view's identity: the same four values give the same pixels everywhere. */
function viewRandom(key: ViewKey): () => number {
  return rng(digestSeed(`${key.seed}/${key.generation}/${key.sampleId}/${key.view}`));
}

/**
 * Returns an augmented copy of `pixels` (uint8 HWC, `height`×`width`×`channels`). Geometry
 * (flip, crop, rotation) is one inverse-mapped bilinear resample; then brightness, contrast, noise.
 */
export function augmentPixels(pixels: Uint8Array, height: number, width: number, channels: number, spec: AugmentSpec, key: ViewKey): Uint8Array {
  const random = viewRandom(key);
  const flipH = spec.flipH === true && random() < 0.5;
  const flipV = spec.flipV === true && random() < 0.5;
  const side = spec.crop === undefined ? 1 : spec.crop;
  const cropH = height * side;
  const cropW = width * side;
  const y0 = (height - cropH) * random();
  const x0 = (width - cropW) * random();
  const angle = spec.rotate === undefined ? 0 : ((random() * 2 - 1) * spec.rotate * Math.PI) / 180;
  const brightness = spec.brightness === undefined ? 0 : (random() * 2 - 1) * spec.brightness * 255;
  const contrast = spec.contrast === undefined ? 1 : 1 + (random() * 2 - 1) * spec.contrast;
  const noise = spec.noise === undefined ? 0 : spec.noise * 255;

  const out = new Float32Array(height * width * channels);
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const cy = (height - 1) / 2;
  const cx = (width - 1) / 2;
  const scaleY = (cropH - 1) / Math.max(1, height - 1);
  const scaleX = (cropW - 1) / Math.max(1, width - 1);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      // Output pixel → rotated about the centre → position in the crop window → source pixel.
      let sy = y0 + (cos * (y - cy) - sin * (x - cx) + cy) * scaleY;
      let sx = x0 + (sin * (y - cy) + cos * (x - cx) + cx) * scaleX;
      if (flipV) sy = height - 1 - sy;
      if (flipH) sx = width - 1 - sx;
      const o = (y * width + x) * channels;
      if (sy < -0.5 || sx < -0.5 || sy > height - 0.5 || sx > width - 0.5) {
        out.fill(255, o, o + channels); // outside the image is white, as transparent areas are
        continue;
      }
      // Bilinear weights once per pixel, then every channel.
      const yc = Math.min(height - 1, Math.max(0, sy));
      const xc = Math.min(width - 1, Math.max(0, sx));
      const y1 = Math.floor(yc);
      const x1 = Math.floor(xc);
      const y2 = Math.min(height - 1, y1 + 1);
      const x2 = Math.min(width - 1, x1 + 1);
      const fy = yc - y1;
      const fx = xc - x1;
      const w11 = (1 - fx) * (1 - fy);
      const w12 = fx * (1 - fy);
      const w21 = (1 - fx) * fy;
      const w22 = fx * fy;
      const p11 = (y1 * width + x1) * channels;
      const p12 = (y1 * width + x2) * channels;
      const p21 = (y2 * width + x1) * channels;
      const p22 = (y2 * width + x2) * channels;
      for (let c = 0; c < channels; c++) {
        out[o + c] = pixels[p11 + c]! * w11 + pixels[p12 + c]! * w12 + pixels[p21 + c]! * w21 + pixels[p22 + c]! * w22;
      }
    }
  }
  let mean = 0;
  if (contrast !== 1) {
    for (let i = 0; i < out.length; i++) mean += out[i]!;
    mean /= out.length;
  }
  const result = new Uint8Array(out.length);
  for (let i = 0; i < out.length; i++) {
    let v = (out[i]! - mean) * contrast + mean + brightness;
    if (noise > 0) v += noise * gaussian(random);
    result[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
  }
  return result;
}

function gaussian(random: () => number): number {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}
