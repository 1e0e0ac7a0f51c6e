/**
 * The seed derivations are a contract (they pick cached views, class samples and training order):
 * these values were computed with the implementations before they moved to src/random.ts.
 */
import { describe, expect, it } from 'vitest';
import { digestSeed, epochSeed, hashSeed, rng, shuffled } from '../src/random.js';
import { viewFor } from '../src/train/batches.js';

const ID = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('seed derivations', () => {
  it('rng is the mulberry32 stream the tests used to copy (first draws pinned, times 2^32)', () => {
    const draws = (seed: number): number[] => {
      const r = rng(seed);
      return [r(), r(), r()].map((v) => v * 4294967296);
    };
    expect(draws(7)).toEqual([50271532, 266108690, 4195786334]);
    expect(draws(3)).toEqual([3093350482, 166052715, 1959330548]);
  });

  it('viewFor draws the same views as before', () => {
    expect([viewFor(9, 0, ID, 3), viewFor(9, 7, ID, 5), viewFor(0, 2, ID, 1000)]).toEqual([0, 4, 420]);
  });

  it('class streams (seed:label, FNV-1a over code points) and view digests are unchanged', () => {
    expect([hashSeed('0:cat'), hashSeed('3:ankle-boot'), hashSeed('1:Café ☕')]).toEqual([4188973649, 3025573762, 2690793932]);
    expect(digestSeed('4/1/abc/2')).toBe(658226539);
  });

  it('epoch streams differ per epoch and the shuffle is a permutation', () => {
    expect(epochSeed(0, 0)).not.toBe(epochSeed(0, 1));
    const order = shuffled([...Array(50).keys()], rng(epochSeed(3, 4)));
    expect([...order].sort((a, b) => a - b)).toEqual([...Array(50).keys()]);
    expect(order).toEqual(shuffled([...Array(50).keys()], rng(epochSeed(3, 4))));
  });
});
