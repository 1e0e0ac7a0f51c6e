/**
 * Crash points at LevelDB's write boundary, in process: every `put`, `del`, `batch`, chained
 * batch `write` and `clear` of any cache is a point, and a "kill" refuses the k-th one (it never
 * reaches the disk) and every write after it — like SIGKILL between two writes, since each LevelDB
 * write is atomic. The finer, system-call-level sweep of the real CLI lives in test/crash/.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';

/** What a killed write throws. */
export class Killed extends Error {}

type AnyFn = (this: unknown, ...args: unknown[]) => Promise<unknown>;
const WRITES = ['_put', '_del', '_batch', '_clear'] as const;

let chainedProto: { _write: AnyFn } | undefined;

/** The prototype of classic-level's chained batch (not exported: taken from a real one). */
async function chainedBatchPrototype(): Promise<{ _write: AnyFn }> {
  if (chainedProto) return chainedProto;
  const dir = await mkdtemp(join(tmpdir(), 'splitfit-level-proto-'));
  const db = new Level(dir);
  await db.open();
  const batch = db.batch();
  chainedProto = Object.getPrototypeOf(batch) as { _write: AnyFn };
  await batch.close();
  await db.close();
  await rm(dir, { recursive: true, force: true });
  return chainedProto;
}

/**
 * Runs `fn` with LevelDB writes counted; with `killAt = k`, the k-th write and all later ones
 * throw {@link Killed} instead of writing. Returns how many writes were attempted and whether
 * the kill fired; rethrows anything but {@link Killed}.
 */
export async function withWriteFault(killAt: number | undefined, fn: () => Promise<unknown>): Promise<{ writes: number; killed: boolean }> {
  const root = Level.prototype as unknown as Record<string, AnyFn>;
  const chained = await chainedBatchPrototype();
  const saved = new Map<string, AnyFn>(WRITES.map((m) => [m, root[m]!]));
  const savedWrite = chained._write;
  let writes = 0;
  let killed = false;
  const gate = (original: AnyFn): AnyFn =>
    async function (this: unknown, ...args: unknown[]) {
      writes++;
      if (killed || (killAt !== undefined && writes >= killAt)) {
        killed = true;
        throw new Killed(`killed at LevelDB write ${killAt}`);
      }
      return original.apply(this, args);
    };
  for (const m of WRITES) root[m] = gate(saved.get(m)!);
  chained._write = gate(savedWrite);
  try {
    await fn();
  } catch (err) {
    if (!killed || !isKilled(err)) throw err;
  } finally {
    for (const m of WRITES) root[m] = saved.get(m)!;
    chained._write = savedWrite;
  }
  return { writes, killed };
}

/** Whether `err` is {@link Killed}, or a coded error wrapping it (FeatureCache keeps causes). */
function isKilled(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (e instanceof Killed) return true;
  return false;
}
