/**
 * Builds a class-folder data set from the Twemoji PNGs in npm `emoji-datasource-twitter`
 * (CC-BY 4.0, © Twitter/X and contributors): one folder per emoji category, 64×64 RGBA PNGs,
 * with a seeded train/test split. Real small-data RGB images, installed with the project.
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

interface EmojiRecord {
  image: string;
  category: string;
  has_img_twitter: boolean;
}

export const DEFAULT_CATEGORIES = ['Animals & Nature', 'Food & Drink', 'Travel & Places', 'Smileys & Emotion'] as const;

export interface EmojiDatasetOptions {
  out: string;
  /** @default DEFAULT_CATEGORIES */
  categories?: readonly string[];
  /** Images per category (all there are when larger). @default 100 */
  perClass?: number;
  /** Fraction of each class put in `test/`. @default 0.3 */
  testFraction?: number;
  /** @default 0 */
  seed?: number;
}

export const folderName = (category: string): string => category.toLowerCase().replace(/[^a-z0-9]+/g, '-');

/** Writes `out/train/<category>/*.png` and `out/test/<category>/*.png`; returns the counts. */
export async function makeEmojiDataset(options: EmojiDatasetOptions): Promise<{ train: number; test: number; classes: string[] }> {
  const categories = options.categories ?? DEFAULT_CATEGORIES;
  const perClass = options.perClass ?? 100;
  const testFraction = options.testFraction ?? 0.3;
  const pkg = dirname(require.resolve('emoji-datasource-twitter/emoji.json'));
  const all = require('emoji-datasource-twitter/emoji.json') as EmojiRecord[];
  await rm(options.out, { recursive: true, force: true });
  let train = 0;
  let test = 0;
  let state = (options.seed ?? 0) + 0x2545f491;
  const random = (): number => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  for (const category of categories) {
    const images = all.filter((e) => e.category === category && e.has_img_twitter).map((e) => e.image);
    if (images.length === 0) throw new Error(`no Twemoji images in category "${category}"`);
    for (let i = images.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [images[i], images[j]] = [images[j]!, images[i]!];
    }
    const chosen = images.slice(0, perClass);
    const nTest = Math.round(chosen.length * testFraction);
    for (const [i, image] of chosen.entries()) {
      const split = i < nTest ? 'test' : 'train';
      const dir = join(options.out, split, folderName(category));
      await mkdir(dir, { recursive: true });
      await copyFile(join(pkg, 'img', 'twitter', '64', image), join(dir, image));
      if (split === 'test') test++;
      else train++;
    }
  }
  return { train, test, classes: categories.map(folderName) };
}
