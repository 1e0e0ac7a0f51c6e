#!/usr/bin/env node
// Offline build of @tensorflow/tfjs-node's native binding.
//
// tfjs-node's own install script downloads libtensorflow from a host that answers 403
// (tensorflow/tfjs#8742) or is unreachable; npm then drops the optional dependency.
// This script restores it without that download: libtensorflow and its C headers come
// from the `tensorflow-cpu` Python wheel (fetched with pip), and the binding is compiled
// with node-gyp. It runs as `postinstall` and as `npm run native`; it never fails the
// install: when it cannot build, it says why in one line and splitfit falls back to wasm/cpu.
//
// Only Node built-ins are used here: this runs before anything else is guaranteed to work.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, readdirSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PKG_DIR = join(ROOT, 'node_modules', '@tensorflow', 'tfjs-node');
/** The wheel whose libtensorflow the binding links; override with SPLITFIT_TF_WHEEL_VERSION. */
const WHEEL_VERSION = process.env.SPLITFIT_TF_WHEEL_VERSION ?? '2.21.0';
/** tfjs-node's install script looks for this file name to decide the library is present. */
const TFJS_LIB_VERSION = '2.9.1';
const FORCE = process.argv.includes('--force');
const started = Date.now();

const say = (msg) => console.log(`[splitfit native] ${msg}`);
const secs = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;

class StepError extends Error {}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw new StepError(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) {
    const tail = `${r.stderr ?? ''}${r.stdout ?? ''}`.trim().split('\n').slice(-3).join(' | ');
    throw new StepError(`${cmd} ${args.slice(0, 3).join(' ')} exited ${r.status}: ${tail}`);
  }
  return r.stdout;
}

/** Loads the binding in a child process, so a crash there cannot take this script down. */
function probe() {
  const code =
    "const tf=require('@tensorflow/tfjs-node');" +
    "process.stdout.write(String(tf.backend().binding.TF_Version))";
  const r = spawnSync(process.execPath, ['-e', code], { cwd: ROOT, encoding: 'utf8' });
  return r.status === 0 ? { ok: true, tfVersion: r.stdout.trim() } : { ok: false, reason: (r.stderr || '').trim().split('\n')[0] };
}

function ensurePackage() {
  if (existsSync(join(PKG_DIR, 'package.json')) && existsSync(join(ROOT, 'node_modules', '@mapbox', 'node-pre-gyp'))) return;
  const own = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const version = own.optionalDependencies?.['@tensorflow/tfjs-node'] ?? own.dependencies?.['@tensorflow/tfjs-node'];
  if (!version) throw new StepError('package.json does not list @tensorflow/tfjs-node');
  say(`step 1/4: fetching @tensorflow/tfjs-node@${version} without its install script`);
  run('npm', ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', `@tensorflow/tfjs-node@${version}`], {
    cwd: ROOT,
    env: { ...process.env, SPLITFIT_NATIVE: 'skip' },
  });
}

const HEADER_PREFIXES = [
  'tensorflow/include/tensorflow/c/',
  'tensorflow/include/tensorflow/core/platform/ctstring',
  'tensorflow/include/tsl/platform/ctstring',
  'tensorflow/include/xla/tsl/c/',
];
const LIBS = ['tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'];

function stageLibtensorflow() {
  const deps = join(PKG_DIR, 'deps');
  const work = mkdtempSync(join(tmpdir(), 'splitfit-tf-'));
  try {
    say(`step 2/4: pip download tensorflow-cpu==${WHEEL_VERSION} (libtensorflow + C headers)`);
    run('python3', ['-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check', '-q', '-d', work, `tensorflow-cpu==${WHEEL_VERSION}`]);
    const wheel = readdirSync(work).find((f) => f.endsWith('.whl'));
    if (!wheel) throw new StepError('pip download produced no wheel');
    say('step 3/4: unpacking libtensorflow into tfjs-node/deps');
    rmSync(deps, { recursive: true, force: true });
    mkdirSync(join(deps, 'lib'), { recursive: true });
    const extract = `
import sys, zipfile, os, shutil
whl, deps, libs, prefixes = sys.argv[1], sys.argv[2], sys.argv[3].split(','), sys.argv[4].split(',')
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.endswith('/'):
            continue
        if n in libs:
            dest = os.path.join(deps, 'lib', os.path.basename(n))
        elif any(n.startswith(p) for p in prefixes):
            dest = os.path.join(deps, 'include', n[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(n) as src, open(dest, 'wb') as out:
            shutil.copyfileobj(src, out, 1 << 20)
`;
    run('python3', ['-c', extract, join(work, wheel), deps, LIBS.join(','), HEADER_PREFIXES.join(',')]);
    const lib = join(deps, 'lib');
    for (const name of ['libtensorflow.so', 'libtensorflow.so.2', `libtensorflow.so.${TFJS_LIB_VERSION}`]) {
      symlinkSync('libtensorflow_cc.so.2', join(lib, name));
    }
    for (const name of ['libtensorflow_framework.so', `libtensorflow_framework.so.${TFJS_LIB_VERSION}`]) {
      symlinkSync('libtensorflow_framework.so.2', join(lib, name));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** node-gyp ships inside npm; npm tells lifecycle scripts where, otherwise look beside node. */
function nodeGypPath() {
  const prefix = dirname(dirname(process.execPath));
  const candidates = [
    process.env.npm_config_node_gyp,
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  const found = candidates.find((c) => c && existsSync(c));
  if (!found) throw new StepError('node-gyp not found (it ships with npm); install npm or set npm_config_node_gyp');
  return found;
}

/** Build against the local Node headers: node-gyp would otherwise download them. */
function nodeDir() {
  const prefix = dirname(dirname(process.execPath));
  const dir = process.env.npm_config_nodedir ?? prefix;
  if (!existsSync(join(dir, 'include', 'node', 'node_api.h'))) {
    throw new StepError(`Node headers not found under ${dir}/include/node; set npm_config_nodedir`);
  }
  return dir;
}

function buildBinding() {
  say('step 4/4: compiling the tfjs-node binding with node-gyp');
  // tfjs-node loads lib/napi-v<N>/tfjs_binding.node for the highest N it lists (8) that Node supports.
  const napi = 8;
  run(process.execPath, [
    nodeGypPath(), 'rebuild', `--nodedir=${nodeDir()}`, `--jobs=${availableParallelism()}`,
    '--module_name=tfjs_binding', `--module_path=${join(PKG_DIR, 'lib', `napi-v${napi}`)}`, `--napi_build_version=${napi}`,
  ], { cwd: PKG_DIR });
}

function main() {
  if (process.env.SPLITFIT_NATIVE === 'skip') return;
  const before = FORCE ? { ok: false } : probe();
  if (before.ok) {
    say(`native TensorFlow ${before.tfVersion} ready (already built)`);
    return;
  }
  try {
    ensurePackage();
    if (FORCE || !existsSync(join(PKG_DIR, 'deps', 'lib', `libtensorflow.so.${TFJS_LIB_VERSION}`))) stageLibtensorflow();
    else say('steps 2-3/4: libtensorflow already staged in tfjs-node/deps');
    buildBinding();
    const after = probe();
    if (!after.ok) throw new StepError(`the binding was built but does not load: ${after.reason}`);
    say(`native TensorFlow ${after.tfVersion} ready (built in ${secs()})`);
  } catch (err) {
    const why = err instanceof StepError ? err.message : String(err);
    say(`native TensorFlow unavailable (${why}); splitfit will use wasm/cpu. Retry with: npm run native`);
  }
}

main();
