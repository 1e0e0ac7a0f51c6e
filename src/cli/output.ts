import { isSplitfitError, SplitfitError, exitCodeFor } from '../errors.js';
import { type EpochMetrics, formatEpoch, ProgressRenderer, type ProgressStream } from './progress.js';

/** How a command talks: human lines and a progress line, or JSON lines ending in one result object. */
export interface Output {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  /** A human line on stdout (suppressed with --json and --quiet). */
  info(line: string): void;
  /** A notice on stderr (every mode). */
  warn(line: string): void;
  /**
   * A progress event: the status line on a TTY, a plain line now and then in a pipe, a JSON line with
   * --json, nothing with --quiet.
   */
  progress(label: string, done: number, total: number, extra?: Record<string, unknown>): void;
  /** An epoch ended: one permanent Keras-style line (human), or the `epoch` progress event with its whole log (--json). */
  epoch(epoch: number, epochs: number, log: EpochMetrics & Record<string, unknown>): void;
  /** The first SIGINT/SIGTERM: says at once that the command stops after the current step and how to resume. */
  interrupted(signal: string): void;
  /** Erases the status line (before an error line or the end). */
  end(): void;
  /** The command's result: the last line on stdout with --json, else rendered by `human`. */
  result(value: object, human: (value: object) => string): void;
}

export interface OutputFlags {
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

/** Where output goes; the process streams unless a test passes its own. */
export interface OutputStreams {
  stdout: ProgressStream;
  stderr: ProgressStream;
}

/** What a progress label counts, for its rate (`12.3 img/s`, `4.1 s/epoch`). */
const UNITS: Record<string, string> = { extract: 'img', epoch: 'epoch' };

export function makeOutput(flags: OutputFlags, streams: OutputStreams = { stdout: process.stdout, stderr: process.stderr }): Output {
  const json = flags.json === true;
  const quiet = flags.quiet === true;
  const { stdout, stderr } = streams;
  const renderer = new ProgressRenderer(stderr, { mode: json || quiet ? 'quiet' : stderr.isTTY === true ? 'tty' : 'lines' });
  const event = (label: string, done: number, total: number, extra?: Record<string, unknown>): void => {
    stdout.write(`${JSON.stringify({ event: label, done, total, ...extra })}\n`);
  };
  let trainingStarted: number | undefined;
  const columns = (): number => (stderr.isTTY === true && stderr.columns ? stderr.columns : Number.POSITIVE_INFINITY);
  return {
    json,
    verbose: flags.verbose === true,
    quiet,
    info(line) {
      if (json || quiet) return;
      renderer.clear();
      stdout.write(`${line}\n`);
    },
    warn(line) {
      renderer.clear();
      stderr.write(`${line}\n`);
    },
    progress(label, done, total, extra) {
      if (json) event(label, done, total, extra);
      else renderer.status({ label, done, total, unit: UNITS[label] ?? 'step' });
    },
    epoch(epoch, epochs, log) {
      if (json) {
        event('epoch', epoch, epochs, log);
        return;
      }
      renderer.line(formatEpoch(epoch, epochs, log, columns()));
      // The training clock starts when epoch 1 did, not when it was first reported.
      trainingStarted ??= renderer.now() - log.seconds * 1000;
      renderer.status({ label: 'training', done: epoch, total: epochs, unit: 'epoch', startedAt: trainingStarted });
    },
    interrupted(signal) {
      renderer.clear();
      if (!json) stderr.write(`\ninterrupted (${signal}) — stopping after the current step; what was done is kept: rerun the same command to resume (${signal} again stops at once)\n`);
    },
    end() {
      renderer.clear();
    },
    result(value, human) {
      renderer.clear();
      if (json) stdout.write(`${JSON.stringify(value)}\n`);
      else stdout.write(`${human(value)}\n`);
    },
  };
}

/** Prints an error as one line (or `{error}` JSON) and returns the exit status. */
export function reportError(err: unknown, flags: { json?: boolean; verbose?: boolean }): 1 | 2 {
  const coded = isSplitfitError(err)
    ? err
    : new SplitfitError(
        'SPLITFIT_INTERNAL',
        `${err instanceof Error ? err.message : String(err)} (unexpected: rerun with --verbose for the stack trace and report it)`,
        { cause: err },
      );
  // One line, whatever the lower layers put in the message (commander's "Did you mean" comes on a new line).
  const message = coded.message.replace(/\s*\n\s*/g, ' ').trim();
  if (flags.json) process.stdout.write(`${JSON.stringify({ error: { code: coded.code, message } })}\n`);
  process.stderr.write(`splitfit: ${coded.code}: ${message}\n`);
  if (flags.verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return exitCodeFor(coded);
}
