import sharp from 'sharp';
import { SplitfitError } from '../errors.js';
import type { RawImage } from './types.js';

/** Size and channel count of a decoded image, as the base expects it. */
export interface DecodeTarget {
  height: number;
  width: number;
  /** 3 = RGB (grayscale inputs are replicated); 1 = grayscale (colour inputs become ITU-R 601-2 luma). */
  channels: 1 | 3;
}

// One libvips thread per image: the extraction pipeline runs several decodes at once (each on a
// libuv worker), which keeps the cores busy without threading overhead. Measured on 2 cores, 64×64
// PNG → 224×224×3: ~3.0 CPU-ms per image with concurrency(1) vs ~3.5–4.0 with concurrency(2), and
// 2–4 parallel decodes beat one. The operation cache only helps when a file is decoded repeatedly.
sharp.concurrency(1);
sharp.cache(false);

/**
 * What decoding does to pixels, for the features fingerprint: features depend on it as much as on
 * the preprocessing preset, and on the libvips version that resamples.
 */
export function describeDecode(): string {
  return `decode/v1:sharp-${sharp.versions.sharp}/vips-${sharp.versions.vips}:auto-orient,flatten-white,fill-lanczos3,srgb-uint8,gray-luma601`;
}

/**
 * Decodes an encoded image (PNG, JPEG, WebP, GIF, TIFF, AVIF) or raw pixels to row-major HWC uint8
 * pixels of exactly `target` size.
 *
 * - Resizes with `fit: 'fill'` (aspect ratio not kept): every pixel of the content stays in view,
 *   like Keras `image_dataset_from_directory`/`tf.image.resize`; `cover` would crop content away and
 *   `contain` would add letterbox bars the pretrained base never saw.
 * - Applies EXIF orientation, composites alpha on white, reduces 16-bit samples to 8 bits, converts
 *   grayscale to RGB (or colour to ITU-R 601-2 luma for `channels: 1`). Animated images use the first frame.
 *
 * Any failure (empty, truncated or non-image bytes, unsupported format) throws `SPLITFIT_DATA_DECODE`
 * naming `source` and the reason, with the sharp error as `cause`.
 * @param source How to name the image in errors (a file path, or `images.idx#12`).
 */
export async function decodeImage(input: Buffer | RawImage, target: DecodeTarget, source: string): Promise<Uint8Array> {
  validateTarget(target);
  const { height, width, channels } = target;
  if (!Buffer.isBuffer(input)) {
    validateRaw(input, source);
    if (input.width === width && input.height === height && input.channels === channels) return new Uint8Array(input.raw);
  } else if (input.length === 0) {
    throw decodeError(source, 'the file is empty (0 bytes)');
  } else if (isSvg(input)) {
    // libvips renders SVG with whatever fonts are installed: the pixels, and so the features, would
    // depend on the machine.
    throw decodeError(source, 'SVG is not supported (its rendering depends on the installed fonts); convert it to PNG');
  }

  let result: { data: Buffer; info: sharp.OutputInfo };
  try {
    const image = Buffer.isBuffer(input)
      ? sharp(input, { failOn: 'warning' }).autoOrient()
      : sharp(input.raw, { raw: { width: input.width, height: input.height, channels: input.channels } });
    result = await image
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .resize(width, height, { fit: 'fill' })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw decodeError(source, reasonOf(err), err);
  }

  const { data, info } = result;
  if (info.width !== width || info.height !== height || info.channels !== 3 || data.length !== height * width * 3) {
    throw decodeError(
      source,
      `decoder returned ${info.width}×${info.height}×${info.channels} (${data.length} bytes), expected ${width}×${height}×3`,
    );
  }
  const rgb = new Uint8Array(data.buffer, data.byteOffset, data.length);
  return channels === 3 ? rgb : luma(rgb);
}

/**
 * ITU-R 601-2 luma with PIL's integer rounding (`L = R·299/1000 + G·587/1000 + B·114/1000`), the
 * grayscale that Keras/PIL and `tf.image.rgb_to_grayscale` use; libvips' `b-w` is a perceptual
 * lightness instead (pure red → 127, not 76). Gray inputs come out unchanged.
 */
function luma(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array(rgb.length / 3);
  for (let i = 0, j = 0; i < out.length; i++, j += 3) {
    out[i] = (rgb[j]! * 19595 + rgb[j + 1]! * 38470 + rgb[j + 2]! * 7471 + 0x8000) >>> 16;
  }
  return out;
}

function validateTarget(target: DecodeTarget): void {
  const { height, width, channels } = target;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new TypeError(`decode target height and width must be positive integers, got ${height}×${width}`);
  }
  if (channels !== 1 && channels !== 3) throw new TypeError(`decode target channels must be 1 or 3, got ${String(channels)}`);
}

function validateRaw(input: RawImage, source: string): void {
  const { raw, width, height, channels } = input;
  if (!(raw instanceof Uint8Array)) throw new TypeError(`raw pixels of ${source} must be a Uint8Array`);
  if (raw.length !== width * height * channels) {
    throw decodeError(source, `raw pixel buffer holds ${raw.length} bytes, expected ${width}×${height}×${channels} = ${width * height * channels}`);
  }
}

/** sharp's messages, made readable: "Input buffer contains unsupported image format" and the like. */
function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/unsupported image format/i.test(message)) {
    return 'not an image in a supported format (PNG, JPEG, WebP, GIF, TIFF, AVIF)';
  }
  if (/premature end|end of stream|truncated|not enough data|Read Error/i.test(message)) {
    return `the image data is truncated or damaged (${message.trim()})`;
  }
  return message.trim();
}

/** SVG text: markup (`<` the first non-blank character) with an `<svg` tag near the start. */
function isSvg(bytes: Buffer): boolean {
  const head = bytes.subarray(0, 1024).toString('latin1').replace(/^\uFEFF|^\xEF\xBB\xBF/, '').trimStart();
  return head.startsWith('<') && /<svg[\s>]/i.test(head);
}

function decodeError(source: string, reason: string, cause?: unknown): SplitfitError {
  return new SplitfitError(
    'SPLITFIT_DATA_DECODE',
    `cannot decode ${source}: ${reason}. Fix or remove the file, or pass --skip-bad (cache-features) to count it as failed`,
    cause === undefined ? undefined : { cause },
  );
}
