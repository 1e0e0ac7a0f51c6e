// Builds dist/browser/: splitfit.js (src/browser/index.ts with tfjs bundled, one ES module) and the
// tfjs wasm backend's binaries beside it, which the module finds relative to its own URL.
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist/browser');
await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(root, 'src/browser/index.ts')],
  outfile: join(out, 'splitfit.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
const wasmDir = join(root, 'node_modules/@tensorflow/tfjs-backend-wasm/dist');
for (const file of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm']) {
  await copyFile(join(wasmDir, file), join(out, file));
}
