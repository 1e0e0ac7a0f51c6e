/**
 * The crash shim (shim/crash-shim.c) from TypeScript: compile it with `cc`, run the built CLI under
 * it (counting, tracing, or killed at the K-th file-system mutation under a work folder), and read
 * its trace.
 */
import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI } from '../helpers/cli.js';

export const SHIM_SOURCE = join(import.meta.dirname, 'shim', 'crash-shim.c');

/** Compiles the shim into `dir` and returns the path of the shared library. */
export async function buildShim(dir: string): Promise<string> {
  const out = join(dir, 'crash-shim.so');
  const cc = process.env['CC'] ?? 'cc';
  try {
    await promisify(execFile)(cc, ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, SHIM_SOURCE, '-ldl']);
  } catch (err) {
    throw new Error(`compiling ${SHIM_SOURCE} with ${cc} failed (install a C compiler: scripts/setup.sh does, or set CC): ${(err as { stderr?: string }).stderr ?? String(err)}`, { cause: err });
  }
  return out;
}

export interface ShimRun {
  /** Exit status, or null when a signal ended the process. */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Whether the run was stopped by the harness's time limit. */
  timedOut: boolean;
}

export interface ShimOptions {
  shim: string;
  /** Only mutations under this absolute folder are counted. */
  workDir: string;
  /** Kill at this counted call (1-based); omitted: count only. */
  killAt?: number;
  /** Append one line per counted call to this file. */
  trace?: string;
  /** Also count read-only opens. */
  allOpens?: boolean;
  /** SIGKILL after this many milliseconds (a hang is a finding, not a wait). @default 120000 */
  timeoutMs?: number;
  cwd?: string;
}

/** Environment of every CLI process the sweep starts, shimmed or not. */
export function cliEnv(): NodeJS.ProcessEnv {
  // io_uring would let libuv write without calling libc, past the shim; the sweep turns it off for
  // every run, so the reference and the killed runs take the same code path.
  return { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2', UV_USE_IO_URING: '0' };
}

/** Runs `node dist/cli/main.js …args` under the shim. */
export function runShimmed(args: string[], options: ShimOptions): Promise<ShimRun> {
  const env: NodeJS.ProcessEnv = {
    ...cliEnv(),
    LD_PRELOAD: [options.shim, process.env['LD_PRELOAD']].filter(Boolean).join(':'),
    SPLITFIT_CRASH_DIR: options.workDir,
    SPLITFIT_CRASH_AT: String(options.killAt ?? 0),
    SPLITFIT_CRASH_TRACE: options.trace ?? '',
    SPLITFIT_CRASH_OPENS: options.allOpens ? 'all' : 'write',
  };
  return runNode([CLI, ...args], env, options.timeoutMs ?? 120_000, options.cwd);
}

/** Runs a node script with `env`; resolves when the process is gone. */
export function runNode(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number, cwd?: string): Promise<ShimRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, cwd: cwd ?? process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}

/** One counted call of a trace: its number, the libc function, and the path (an fd's path for fd calls). */
export interface TraceCall {
  n: number;
  op: string;
  path: string;
}

export async function readTrace(file: string): Promise<TraceCall[]> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err)));
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [n, op, ...rest] = l.split(' ');
      return { n: Number(n), op: op ?? '?', path: rest.join(' ') };
    })
    .sort((a, b) => a.n - b.n);
}
