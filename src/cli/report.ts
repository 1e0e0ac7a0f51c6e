import type { Command } from 'commander';
import { regenerateReport } from '../report/write.js';
import { type CommonFlags, defineCommand } from './command.js';

export function registerReport(program: Command): void {
  const cmd = defineCommand<CommonFlags>(program, 'report <out>', "render a train-head output folder's report.html again (from its report.json, or its history and manifest)", async (out, _f, args) => {
    const r = await regenerateReport(args[0]!);
    out.result(r, () => `wrote ${r.file}${r.sections.length ? ` (${r.sections.join(', ')})` : ' (training curves; no validation section)'}; open it in a browser, it needs no network`);
  });
  cmd.addHelpText('after', '\nExample:\n  splitfit report model/\n');
}
