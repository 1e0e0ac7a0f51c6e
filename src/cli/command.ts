import { Command } from 'commander';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { type BackendChoice, fallbackNotice, resolveBackend } from '../backend/resolve.js';
import { FeatureCache } from '../cache/feature-cache.js';
import { SplitfitError } from '../errors.js';
import { makeOutput, type Output, reportError } from './output.js';
import { choice } from './parse.js';

export interface CommonFlags {
  json?: boolean;
  verbose?: boolean;
}

/** Adds --json and --verbose, and runs the action with an Output, turning errors into exit codes. */
export function defineCommand<F extends CommonFlags>(
  parent: Command,
  nameAndArgs: string,
  description: string,
  action: (out: Output, flags: F, args: string[]) => Promise<void>,
): Command {
  const cmd = parent.command(nameAndArgs).description(description);
  cmd.option('--json', 'print JSON: events as lines, the result as the last line').option('--verbose', 'show stack traces on errors');
  cmd.action(async (...params: unknown[]) => {
    const command = params.at(-1) as Command;
    const flags = command.opts<F>();
    const args = command.args;
    try {
      await action(makeOutput(flags), flags, args);
    } catch (err) {
      process.exitCode = reportError(err, flags);
    }
  });
  return cmd;
}

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;

export function backendOption(cmd: Command): Command {
  return cmd.option('--backend <name>', 'auto | tensorflow | wasm | cpu', choice('--backend', BACKEND_CHOICES), 'auto');
}

/** Activates the backend and says so in one line when the native one is missing. */
export async function useBackend(out: Output, choiceName: BackendChoice): Promise<string> {
  const active = await resolveBackend(choiceName);
  const notice = await fallbackNotice(active);
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
