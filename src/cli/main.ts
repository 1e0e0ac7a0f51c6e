#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { SplitfitError } from '../errors.js';
import { registerCache } from './cache.js';
import { registerCacheFeatures } from './cache-features.js';
import { registerDoctor } from './doctor.js';
import { registerEvaluate } from './evaluate.js';
import { registerExport } from './export.js';
import { registerInspect } from './inspect.js';
import { registerModels } from './models.js';
import { reportError } from './output.js';
import { registerPredict } from './predict.js';
import { registerReport } from './report.js';
import { registerTrainHead } from './train-head.js';
import { VERSION } from './version.js';

// `splitfit … | head` closes the pipe early: that is the reader's choice, not an error to crash on.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

const program = new Command('splitfit')
  .description('Small-data transfer learning on TensorFlow.js: split, cache frozen features, train the head, stitch.')
  .version(VERSION)
  .exitOverride()
  .showSuggestionAfterError(true)
  .configureOutput({ writeErr: () => undefined });

registerModels(program);
registerInspect(program);
registerCacheFeatures(program);
registerTrainHead(program);
registerEvaluate(program);
registerPredict(program);
registerReport(program);
registerExport(program);
registerCache(program);
registerDoctor(program);
for (const cmd of [program, ...program.commands, ...program.commands.flatMap((c) => c.commands)]) {
  cmd.exitOverride().configureOutput({ writeErr: () => undefined });
}

const argv = process.argv.slice(2);
const flags = { json: argv.includes('--json'), verbose: argv.includes('--verbose') };
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.exitCode === 0) process.exitCode = 0; // --help, --version
    else process.exitCode = reportError(new SplitfitError('SPLITFIT_USAGE', `${err.message.replace(/^error: /, '')} (see splitfit --help)`), flags);
  } else {
    process.exitCode = reportError(err, flags);
  }
}
