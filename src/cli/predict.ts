import type { Command } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { predict } from '../infer/predict.js';
import { backendOption, type CommonFlags, defineCommand, useBackend } from './command.js';
import { positiveInt } from './parse.js';

interface Flags extends CommonFlags {
  model: string;
  batchSize: number;
  backend: BackendChoice;
}

export function registerPredict(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'predict [files...]', 'classify image files with a stitched model', async (out, f, files, { signal }) => {
    await useBackend(out, f.backend);
    const { predictions } = await predict(f.model, files, { batchSize: f.batchSize, signal });
    out.result({ predictions }, () => predictions.map((x) => `${x.file}\t${x.label}\t${x.probability.toFixed(4)}`).join('\n'));
  });
  cmd.requiredOption('--model <model.json>', 'stitched model').option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 32).addHelpText('after', '\nExample:\n  splitfit predict --model model/model.json new-photo.png more-photos/\n');
  backendOption(cmd);
}
