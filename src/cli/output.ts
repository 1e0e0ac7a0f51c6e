import { isSplitfitError, SplitfitError, exitCodeFor } from '../errors.js';

/** How a command talks: human lines and a progress bar, or JSON lines ending in one result object. */
export interface Output {
  json: boolean;
  verbose: boolean;
  /** A human line on stdout (suppressed with --json). */
  info(line: string): void;
  /** A notice on stderr (both modes). */
  warn(line: string): void;
  /** A progress event: a bar on a TTY, a JSON line with --json, nothing otherwise. */
  progress(label: string, done: number, total: number, extra?: Record<string, unknown>): void;
  /** The command's result: the last line on stdout with --json, else rendered by `human`. */
  result(value: object, human: (value: object) => string): void;
}

export function makeOutput(flags: { json?: boolean; verbose?: boolean }): Output {
  const json = flags.json === true;
  const tty = process.stderr.isTTY === true && !json;
  let barShown = false;
  const clearBar = (): void => {
    if (barShown) {
      process.stderr.write('\r\x1b[K');
      barShown = false;
    }
  };
  return {
    json,
    verbose: flags.verbose === true,
    info(line) {
      if (json) return;
      clearBar();
      process.stdout.write(`${line}\n`);
    },
    warn(line) {
      clearBar();
      process.stderr.write(`${line}\n`);
    },
    progress(label, done, total, extra) {
      if (json) {
        process.stdout.write(`${JSON.stringify({ event: label, done, total, ...extra })}\n`);
      } else if (tty) {
        const width = 30;
        const frac = total > 0 ? Math.min(1, done / total) : 1;
        const filled = Math.round(frac * width);
        const tail = extra ? ` ${Object.entries(extra).map(([k, v]) => `${k} ${typeof v === 'number' ? v.toFixed(4) : String(v)}`).join(' ')}` : '';
        process.stderr.write(`\r\x1b[K${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${tail}`);
        barShown = true;
      }
    },
    result(value, human) {
      clearBar();
      process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human(value)}\n`);
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
