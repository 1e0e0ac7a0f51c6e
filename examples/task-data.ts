/**
 * Builds the regression and multi-label example data sets from the Twemoji PNGs in npm
 * `emoji-datasource-twitter` (CC-BY 4.0, © Twitter/X and contributors), offline and seeded:
 * - rotation: each emoji rotated by a seeded angle in ±maxAngle degrees about its centre (the 64×64
 *   window kept, white behind), listed as `path,target_angle` — regress the angle;
 * - multi-label: 2 or 3 emoji of *different* categories pasted side by side into a 2×2 grid of a
 *   128×128 white canvas, listed as `path,labels` with the categories joined by `|`.
 * Images are split into train and test by source emoji, so no test image reuses a training emoji.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { folderName } from './emoji-categories/dataset.js';

const require = createRequire(import.meta.url);

interface EmojiRecord {
  image: string;
  category: string;
  has_img_twitter: boolean;
}

/** A seeded LCG in [0, 1), the same stream as the emoji-categories example. */
function lcg(seed: number): () => number {
  let state = (seed + 0x2545f491) >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function emoji(categories?: readonly string[]): { pkg: string; records: EmojiRecord[] } {
  const pkg = join(dirname(require.resolve('emoji-datasource-twitter/emoji.json')), 'img', 'twitter', '64');
  const all = (require('emoji-datasource-twitter/emoji.json') as EmojiRecord[]).filter((e) => e.has_img_twitter && e.category !== 'Component');
  return { pkg, records: categories ? all.filter((e) => categories.includes(e.category)) : all };
}

const WHITE = { r: 255, g: 255, b: 255, alpha: 1 };
const csvField = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

export interface RotationOptions {
  out: string;
  /** Source emoji (each gives one image). @default 300 */
  count?: number;
  /** @default 45 */
  maxAngle?: number;
  /** @default 0.3 */
  testFraction?: number;
  /** @default 0 */
  seed?: number;
}

/** Writes `out/images/*.png`, `out/train.csv` and `out/test.csv` (`path,target_angle`, degrees, counter-clockwise positive). */
export async function makeRotationDataset(o: RotationOptions): Promise<{ train: string; test: string; trainCount: number; testCount: number }> {
  const random = lcg(o.seed ?? 0);
  const { pkg, records } = emoji();
  const chosen = shuffle([...records], random).slice(0, o.count ?? 300);
  const maxAngle = o.maxAngle ?? 45;
  await rm(o.out, { recursive: true, force: true });
  await mkdir(join(o.out, 'images'), { recursive: true });
  const rows: string[] = [];
  for (const [i, e] of chosen.entries()) {
    // Two decimals: the CSV holds exactly the angle the image was rotated by.
    const angle = Math.round((random() * 2 - 1) * maxAngle * 100) / 100;
    const flat = await sharp(join(pkg, e.image)).flatten({ background: WHITE }).toBuffer();
    // sharp rotates clockwise for positive angles; the target is counter-clockwise positive (the maths convention).
    const rotated = await sharp(flat).rotate(-angle, { background: WHITE }).toBuffer({ resolveWithObject: true });
    const { width, height } = rotated.info;
    const name = `rot-${String(i).padStart(4, '0')}.png`;
    await sharp(rotated.data)
      .extract({ left: Math.floor((width - 64) / 2), top: Math.floor((height - 64) / 2), width: 64, height: 64 })
      .png()
      .toFile(join(o.out, 'images', name));
    rows.push(`images/${name},${angle}`);
  }
  return writeSplits(o.out, 'path,target_angle', rows, o.testFraction ?? 0.3);
}

export interface MultiLabelOptions {
  out: string;
  /** Composite images. @default 300 */
  count?: number;
  /** Categories a composite draws from (each at most once per image). @default four */
  categories?: readonly string[];
  /** @default 0.3 */
  testFraction?: number;
  /** @default 0 */
  seed?: number;
}

export const MULTILABEL_CATEGORIES = ['Animals & Nature', 'Food & Drink', 'Travel & Places', 'Smileys & Emotion'] as const;

/** Writes `out/images/*.png`, `out/train.csv` and `out/test.csv` (`path,labels`, categories joined by `|`). */
export async function makeMultiLabelDataset(o: MultiLabelOptions): Promise<{ train: string; test: string; trainCount: number; testCount: number; labels: string[] }> {
  const random = lcg(o.seed ?? 0);
  const categories = o.categories ?? MULTILABEL_CATEGORIES;
  const { pkg, records } = emoji(categories);
  const testFraction = o.testFraction ?? 0.3;
  // Split each category's emoji into train and test pools first: a test composite never reuses a training emoji.
  const pools = new Map(
    categories.map((c) => {
      const images = shuffle(records.filter((r) => r.category === c).map((r) => r.image), random);
      const nTest = Math.round(images.length * testFraction);
      return [c, { test: images.slice(0, nTest), train: images.slice(nTest) }] as const;
    }),
  );
  await rm(o.out, { recursive: true, force: true });
  await mkdir(join(o.out, 'images'), { recursive: true });
  const count = o.count ?? 300;
  const nTest = Math.round(count * testFraction);
  const splits: Record<'train' | 'test', string[]> = { train: [], test: [] };
  for (let i = 0; i < count; i++) {
    const split = i < nTest ? 'test' : 'train';
    const k = random() < 0.5 ? 2 : 3;
    const cats = shuffle([...categories], random).slice(0, k);
    const slots = shuffle([0, 1, 2, 3], random).slice(0, k);
    const layers = await Promise.all(
      cats.map(async (c, j) => {
        const pool = pools.get(c)![split];
        const image = pool[Math.floor(random() * pool.length)]!;
        return { input: await sharp(join(pkg, image)).png().toBuffer(), left: (slots[j]! % 2) * 64, top: Math.floor(slots[j]! / 2) * 64 };
      }),
    );
    const name = `multi-${String(i).padStart(4, '0')}.png`;
    await sharp({ create: { width: 128, height: 128, channels: 3, background: WHITE } }).composite(layers).png().toFile(join(o.out, 'images', name));
    splits[split].push(`images/${name},${csvField(cats.map(folderName).sort().join('|'))}`);
  }
  const train = join(o.out, 'train.csv');
  const test = join(o.out, 'test.csv');
  await writeFile(train, `path,labels\n${splits.train.join('\n')}\n`);
  await writeFile(test, `path,labels\n${splits.test.join('\n')}\n`);
  return { train, test, trainCount: splits.train.length, testCount: splits.test.length, labels: categories.map(folderName).sort() };
}

async function writeSplits(out: string, header: string, rows: string[], testFraction: number): Promise<{ train: string; test: string; trainCount: number; testCount: number }> {
  const nTest = Math.round(rows.length * testFraction);
  const train = join(out, 'train.csv');
  const test = join(out, 'test.csv');
  await writeFile(test, `${header}\n${rows.slice(0, nTest).join('\n')}\n`);
  await writeFile(train, `${header}\n${rows.slice(nTest).join('\n')}\n`);
  return { train, test, trainCount: rows.length - nTest, testCount: nTest };
}
