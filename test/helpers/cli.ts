import { spawn } from 'node:child_process';
import { join } from 'node:path';

export const CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  /** The last stdout line parsed as JSON (the `--json` contract). */
  json: Record<string, unknown>;
  /** The signal that ended the process (`SIGKILL` when `timeoutMs` ran out), else null. */
  signal: NodeJS.Signals | null;
}

/** Runs the built CLI (`npm test` compiles it first) on the backend the tests use. */
export function runCli(args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? process.cwd(),
      env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // A kill timer, for tests of inputs that once hung: a hang must end the row, not the suite.
      ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs, killSignal: 'SIGKILL' as const }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status, signal) => {
      const last = stdout.trim().split('\n').at(-1) ?? '';
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(last) as Record<string, unknown>;
      } catch {
        // not a --json call
      }
      resolve({ status: status ?? -1, stdout, stderr, json, signal });
    });
  });
}

export const backendArgs = (): string[] => ['--backend', process.env['SPLITFIT_TEST_BACKEND'] ?? 'auto'];
