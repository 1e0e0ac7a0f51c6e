/**
 * Seeded randomness shared by data selection, augmentation and training: same seed, same draws.
 * Every seed derivation of the project lives here (the exact values are a contract: they pick the
 * cached views and the training order).
 */
import { createHash } from 'node:crypto';

/** mulberry32: a small, fast, seedable PRNG; the same seed gives the same sequence everywhere. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates shuffle of `items` (a copy), driven by `random`. */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Seed for epoch `epoch` of a run seeded `seed`: independent streams per epoch. */
export function epochSeed(seed: number, epoch: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(epoch + 1, 0xc2b2ae35)) >>> 0;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** 32-bit FNV-1a over the code points of `text`, from `basis`: a seed from a name (a class, a sample id). */
export function hashSeed(text: string, basis = FNV_OFFSET): number {
  let h = basis;
  for (const ch of text) h = Math.imul(h ^ ch.codePointAt(0)!, FNV_PRIME);
  return h >>> 0;
}

/** A seed from SHA-256 of `text` (its first four bytes, little-endian): for keys whose streams must never collide. */
export function digestSeed(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32LE(0);
}
