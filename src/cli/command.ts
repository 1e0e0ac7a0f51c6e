import { Command } from 'commander';
import { type BackendChoice, fallbackNotice, resolveBackend } from '../backend/resolve.js';
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
