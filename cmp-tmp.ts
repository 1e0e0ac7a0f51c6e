import { FeatureCache } from './src/cache/feature-cache.js';
async function dump(dir: string) {
  await using c = await FeatureCache.open(dir, { readOnly: true });
  const [fp] = await c.listFingerprints();
  const m = new Map<string, Buffer>();
  for await (const b of c.iterateFeatures(fp!)) for (const e of b) m.set(e.sampleId, Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength));
  return m;
}
const [a, ...rest] = process.argv.slice(2);
const A = await dump(a!);
for (const r of rest) { const B = await dump(r); let diff = 0, maxd = 0; for (const [k, v] of A) { const w = B.get(k)!; if (!w || !v.equals(w)) { diff++; const fa = new Float32Array(v.buffer.slice(v.byteOffset, v.byteOffset+v.length)); const fb = new Float32Array(w.buffer.slice(w.byteOffset, w.byteOffset+w.length)); for (let i=0;i<fa.length;i++) maxd=Math.max(maxd,Math.abs(fa[i]!-fb[i]!)); } } console.log(r, A.size, B.size, 'diff', diff, 'maxd', maxd); }
