import { type Command, Help, Option } from 'commander';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BACKEND_CHOICES, type BackendChoice, fallbackNotice, resolveBackend } from '../backend/resolve.js';
import { FeatureCache } from '../cache/feature-cache.js';
import { SplitfitError } from '../errors.js';
import { makeOutput, type Output, reportError } from './output.js';

export interface CommonFlags {
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

/** What a command's action gets besides its flags. */
export interface CommandContext {
  /** Aborted on the first SIGINT/SIGTERM with `SPLITFIT_INTERRUPTED`; pass it to the library call. */
  signal: AbortSignal;
}

const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Adds --json and --verbose, and runs the action with an Output, turning errors into exit codes.
 * The first SIGINT/SIGTERM aborts the action's signal: the library stops between steps, closes the
 * cache, and the command ends with the `SPLITFIT_INTERRUPTED` line (JSON too) and exit 130/143.
 * A second signal exits at once.
 */
export function defineCommand<F extends CommonFlags>(
  parent: Command,
  nameAndArgs: string,
  description: string,
  action: (out: Output, flags: F, args: string[], ctx: CommandContext) => Promise<void>,
): Command {
  const cmd = parent.command(nameAndArgs).description(description);
  // commander's help does not say which options are required (`requiredOption`); ours does.
  cmd.configureHelp({
    optionDescription(option: Option): string {
      const text = Help.prototype.optionDescription.call(this, option);
      return option.mandatory ? `(required) ${text}` : text;
    },
  });
  cmd
    .option('--json', 'print JSON: events as lines, the result as the last line')
    .option('--quiet', 'no progress or notes: only warnings, errors and the result')
    .option('--verbose', 'show stack traces on errors');
  cmd.action(async (...params: unknown[]) => {
    const command = params.at(-1) as Command;
    const flags = command.opts<F>();
    const args = command.args;
    const controller = new AbortController();
    const out = makeOutput(flags);
    let received: keyof typeof SIGNAL_EXIT | undefined;
    const onSignal = (name: keyof typeof SIGNAL_EXIT): void => {
      if (received) process.exit(SIGNAL_EXIT[received]);
      received = name;
      out.interrupted(name);
      controller.abort(new SplitfitError('SPLITFIT_INTERRUPTED', `interrupted by ${name}; what was done is kept — rerun the same command to resume`));
    };
    const handlers = (['SIGINT', 'SIGTERM'] as const).map((name) => [name, () => onSignal(name)] as const);
    for (const [name, h] of handlers) process.on(name, h);
    try {
      await action(out, flags, args, { signal: controller.signal });
    } catch (err) {
      out.end();
      const status = reportError(withFlagNames(err, command), flags);
      process.exitCode = received ? SIGNAL_EXIT[received] : status;
    } finally {
      for (const [name, h] of handlers) process.off(name, h);
    }
  });
  return cmd;
}

/** Option names that are not the camelCase of their flag. */
const FLAG_OVERRIDES: Record<string, string> = {
  learningRate: '--lr',
  memoryBudget: '--memory-budget-mb',
  lockBatchNorm: '--lock-bn',
  extractBatchSize: '--batch-size',
  positiveWeights: '--pos-weight',
  tuneThresholds: '--tune-threshold',
};

/**
 * The library names options as its API does (`learningRate`, in backticks); on the command line the
 * same message names the flag (`--lr`) when the command has one.
 */
export function withFlagNames(err: unknown, command: Command): unknown {
  if (!(err instanceof SplitfitError) || err.code !== 'SPLITFIT_USAGE') return err;
  const longs = new Set(command.options.map((o) => o.long));
  const message = err.message.replace(/`([a-z][A-Za-z0-9]*)`/g, (whole, name: string) => {
    const flag = FLAG_OVERRIDES[name] ?? `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    return longs.has(flag) ? flag : whole;
  });
  return message === err.message ? err : new SplitfitError(err.code, message, { cause: err, ...(err.option ? { option: err.option } : {}) });
}

export function backendOption(cmd: Command): Command {
  return cmd.addOption(new Option('--backend <name>', 'compute backend').choices(BACKEND_CHOICES).default('auto'));
}

/**
 * Activates the backend and says so in one line when `auto` found no native one. An explicit choice
 * is not second-guessed: probing native TensorFlow would load libtensorflow (and its start-up lines)
 * into a process that asked for `cpu` or `wasm`.
 */
export async function useBackend(out: Output, choiceName: BackendChoice): Promise<string> {
  const active = await resolveBackend(choiceName);
  const notice = choiceName === 'auto' ? await fallbackNotice(active) : undefined;
  if (notice) out.warn(notice);
  return active;
}

/** The command line as typed, recorded as the cache's holder so that a process locked out can name it. */
export function commandLine(): string {
  return ['splitfit', ...process.argv.slice(2)].join(' ');
}

/**
 * Opens the cache in `dir` if one exists, before any model is loaded, so that a cache another process
 * holds fails at once with `SPLITFIT_CACHE_LOCKED` (naming the holder) instead of after the model load.
 * Returns `undefined` when there is no cache yet: the library creates it once the inputs are known to be
 * good, so a command that fails on bad input leaves no empty cache behind.
 */
export async function openExistingCache(dir: string): Promise<FeatureCache | undefined> {
  const found = await access(join(dir, 'CURRENT')).then(
    () => true,
    () => false,
  );
  return found ? FeatureCache.open(dir, { createIfMissing: false, command: commandLine() }) : undefined;
}

/**
 * Fails with `SPLITFIT_IO` unless `dir` is, or can be created as, a writable folder — without creating
 * anything: the nearest existing ancestor must be a folder the process may write (a read-only file
 * system counts as not writable, also for root).
 */
export async function assertWritableFolder(dir: string, flag: string): Promise<void> {
  const target = resolve(dir);
  let probe = target;
  for (;;) {
    const info = await stat(probe).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : err));
    if (info instanceof Error) throw new SplitfitError('SPLITFIT_IO', `${flag} ${dir}: cannot inspect ${probe} (${info.code ?? info.message}); choose another ${flag}`, { cause: info });
    if (info !== undefined) {
      if (!info.isDirectory()) {
        const what = probe === target ? 'exists and is not a folder' : `cannot be created: ${probe} is a file, not a folder`;
        throw new SplitfitError('SPLITFIT_IO', `${flag} ${dir} ${what}; choose another ${flag}`);
      }
      break;
    }
    const parent = dirname(probe);
    if (parent === probe) break;
    probe = parent;
  }
  try {
    await access(probe, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EROFS' ? 'it is on a read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : String(code ?? err);
    const where = probe === target ? `folder ${dir}` : `${probe} (where ${dir} would be created)`;
    throw new SplitfitError('SPLITFIT_IO', `${flag}: cannot write to ${where}: ${why}; choose another ${flag} or fix its permissions`, { cause: err });
  }
}
