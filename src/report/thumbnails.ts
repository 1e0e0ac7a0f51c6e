import sharp from 'sharp';
import { decodeImage } from '../data/decode.js';
import type { Sample } from '../data/types.js';

/** Thumbnail edge in pixels: enough to recognise an image in a grid of misclassified samples. */
export const THUMBNAIL_SIZE = 64;

/**
 * A sample as a small PNG `data:` URI, decoded as training decodes it (orientation, alpha on white),
 * or `undefined` when the file is gone or no longer decodes: a report is not worth failing a run over.
 */
export async function thumbnail(sample: Sample, channels: 1 | 3): Promise<string | undefined> {
  try {
    const pixels = await decodeImage(await sample.load(), { height: THUMBNAIL_SIZE, width: THUMBNAIL_SIZE, channels }, sample.source);
    const png = await sharp(Buffer.from(pixels), { raw: { width: THUMBNAIL_SIZE, height: THUMBNAIL_SIZE, channels } }).png().toBuffer();
    return `data:image/png;base64,${png.toString('base64')}`;
  } catch {
    return undefined;
  }
}
