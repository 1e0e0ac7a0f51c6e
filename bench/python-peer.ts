/**
 * The Python TensorFlow/Keras peers of the benches: found, never installed (see docs/BENCHMARKS.md
 * for the venv), and run as child processes that print one JSON object as their last line.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

/** `--python` first, then $SPLITFIT_BENCH_PYTHON, then the documented venv; undefined when none exists or `--no-python`. */
export function findPython(flag: string | undefined, disabled: boolean): string | undefined {
  if (disabled) return undefined;
  return [flag, process.env['SPLITFIT_BENCH_PYTHON'], '/tmp/tfpy/bin/python'].filter((p): p is string => !!p).find((p) => existsSync(p));
}

/** Runs `bin script ...args` and parses the last stdout line as JSON; a failure names the script and its last stderr lines. */
export function runPythonJson<T>(bin: string, script: string, args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile(bin, [script, ...args], { maxBuffer: 1 << 24, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${script}: ${err.message.split('\n')[0]} ${stderr.trim().split('\n').slice(-2).join(' | ')}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as T);
      } catch {
        reject(new Error(`${script}: unexpected output: ${stdout.slice(-200)}`));
      }
    });
  });
}
