import sharp from 'sharp';
import { SplitfitError } from '../errors.js';
import { type DecodedPixels, PIXEL_PIPELINE, type PixelTarget, toInputPixels } from './pixels.js';
import type { RawImage } from './types.js';

/** Size and channel count of a decoded image, as the base expects it. */
export type DecodeTarget = PixelTarget;

// One libvips thread per image: the extraction pipeline runs several decodes at once (each on a
// libuv worker), which keeps the cores busy without threading overhead. Measured on 2 cores, 64×64
// PNG → 224×224×3: ~3.0 CPU-ms per image with concurrency(1) vs ~3.5–4.0 with concurrency(2), and
// 2–4 parallel decodes beat one. The operation cache only helps when a file is decoded repeatedly.
sharp.concurrency(1);
sharp.cache(false);

/**
 * What decoding does to pixels, for the features fingerprint: features depend on it as much as on
 * the preprocessing preset. sharp only decodes (the libvips version still names the decoders);
 * compositing and resizing are splitfit's own ({@link PIXEL_PIPELINE}), shared with the browser.
 */
export function describeDecode(): string {
  return `decode/v2:sharp-${sharp.versions.sharp}/vips-${sharp.versions.vips}:auto-orient,srgb-uint8|${PIXEL_PIPELINE}`;
}

/**
 * Decodes an encoded image (PNG, JPEG, WebP, GIF, TIFF, AVIF) or raw pixels to row-major HWC uint8
 * pixels of exactly `target` size.
 *
 * sharp decodes at the image's own size: EXIF orientation applied, colour converted to sRGB (an
 * embedded ICC profile is honoured), 16-bit samples reduced to 8 bits, animated images' first
 * frame. Everything after that is {@link toInputPixels} — alpha composited on white, the resize
 * with `fit: 'fill'` (aspect ratio not kept: every pixel of the content stays in view, like Keras
 * `image_dataset_from_directory`/`tf.image.resize`; cropping would cut content away and letterbox
 * bars the pretrained base never saw), gray ↔ RGB — the code the browser module runs on the
 * pixels the browser decodes.
 *
 * Any failure (empty, truncated or non-image bytes, unsupported format) throws `SPLITFIT_DATA_DECODE`
 * naming `source` and the reason, with the sharp error as `cause`.
 * @param source How to name the image in errors (a file path, or `images.idx#12`).
 */
export async function decodeImage(input: Buffer | RawImage, target: DecodeTarget, source: string): Promise<Uint8Array> {
  validateTarget(target);
  if (!Buffer.isBuffer(input)) {
    validateRaw(input, source);
    return toInputPixels({ data: input.raw, width: input.width, height: input.height, channels: input.channels }, target);
  }
  if (input.length === 0) throw decodeError(source, 'the file is empty (0 bytes)');
  if (isSvg(input)) {
    // libvips renders SVG with whatever fonts are installed: the pixels, and so the features, would
    // depend on the machine.
    throw decodeError(source, 'SVG is not supported (its rendering depends on the installed fonts); convert it to PNG');
  }
  const decoded = await decodePixels(input, source);
  return toInputPixels(decoded, target);
}

/** sharp's part: the image's own pixels, sRGB, 8-bit, oriented; RGB or RGBA. */
async function decodePixels(input: Buffer, source: string): Promise<DecodedPixels> {
  let result: { data: Buffer; info: sharp.OutputInfo };
  try {
    result = await sharp(input, { failOn: 'warning' }).autoOrient().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw decodeError(source, reasonOf(err), err);
  }
  const { data, info } = result;
  const { width, height, channels } = info;
  if ((channels !== 3 && channels !== 4) || data.length !== width * height * channels) {
    throw decodeError(source, `decoder returned ${width}×${height}×${channels} (${data.length} bytes), expected RGB or RGBA`);
  }
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width, height, channels };
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
