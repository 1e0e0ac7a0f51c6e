/**
 * Real images of different kinds for the browser parity test, written from the Twemoji package
 * (icons and the large sprite sheet — the only real pictures on a fresh machine): upscaled icons, a
 * large downscaled picture, semi-transparent and 16-bit PNGs, an EXIF-rotated JPEG, a JPEG with a
 * Display P3 ICC profile, gray, WebP, a wide aspect ratio.
 */
import { join } from 'node:path';
import sharp from 'sharp';
import { TWEMOJI_DIR, writeAt } from '../data-fixtures.js';

const SHEET = join(TWEMOJI_DIR, '..', 'sheets', '64.png');

/** Writes the images into `dir`; returns their file names, each naming its kind. */
export async function writeParityImages(dir: string): Promise<string[]> {
  const icon = (code: string): sharp.Sharp => sharp(join(TWEMOJI_DIR, `${code}.png`));
  const crop = (left: number, top: number, width: number, height: number): sharp.Sharp =>
    sharp(SHEET, { limitInputPixels: false }).extract({ left, top, width, height });
  const images: [string, Promise<Buffer>][] = [
    ['icon-64-smile.png', icon('1f600').png().toBuffer()],
    ['icon-64-dog.png', icon('1f436').png().toBuffer()],
    ['icon-64-car.png', icon('1f697').png().toBuffer()],
    ['semi-transparent.png', semiTransparent(join(TWEMOJI_DIR, '1f34e.png'))],
    ['sixteen-bit.png', icon('1f355').toColourspace('rgb16').png().toBuffer()],
    ['gray.png', icon('1f431').grayscale().png().toBuffer()],
    // Stored turned 90° anticlockwise with orientation 6: shown upright only if EXIF is applied.
    ['exif-rotated.jpg', crop(640, 640, 260, 180).flatten({ background: '#ffffff' }).rotate(-90).jpeg({ quality: 92 }).withMetadata({ orientation: 6 }).toBuffer()],
    ['icc-display-p3.jpg', crop(1300, 900, 300, 300).flatten({ background: '#ffffff' }).withIccProfile('p3').jpeg({ quality: 92 }).toBuffer()],
    ['large-1800x1350.jpg', crop(200, 300, 1800, 1350).flatten({ background: '#ffffff' }).jpeg({ quality: 90 }).toBuffer()],
    ['medium-500x375.png', crop(2000, 1200, 500, 375).png().toBuffer()],
    ['wide-320x96.webp', crop(900, 2400, 320, 96).webp({ quality: 90 }).toBuffer()],
    ['tiny-16.png', icon('1f680').resize(16, 16).png().toBuffer()],
  ];
  for (const [name, bytes] of images) await writeAt(join(dir, name), await bytes);
  return images.map(([name]) => name);
}

/** The icon with every alpha value halved: edges and body both semi-transparent. */
async function semiTransparent(file: string): Promise<Buffer> {
  const { data, info } = await sharp(file).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  for (let i = 3; i < data.length; i += 4) data[i] = data[i]! >> 1;
  return sharp(data, { raw: { width: info.width, height: info.height, channels: 4 } }).png().toBuffer();
}
