import type { Command } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { predict } from '../infer/predict.js';
import type { TaskResult } from '../infer/result.js';
import { backendOption, type CommonFlags, defineCommand, useBackend } from './command.js';
import { positiveInt } from './parse.js';

interface Flags extends CommonFlags {
  model: string;
  batchSize: number;
  backend: BackendChoice;
}

/** One tab-separated line per image: `label  p` (classify), `a|b  p_a p_b …` (multilabel, `-` for none), `name=value …` (regress). */
function describeResult(r: TaskResult): string {
  if ('value' in r) return Object.entries(r.values).map(([t, v]) => `${t}=${v.toFixed(4)}`).join(' ');
  if ('label' in r) return `${r.label}\t${r.probability.toFixed(4)}`;
  return `${r.labels.join('|') || '-'}\t${Object.entries(r.probabilities).map(([l, p]) => `${l}:${p.toFixed(3)}`).join(' ')}`;
}

export function registerPredict(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'predict [files...]', 'classify, tag (multilabel) or score (regress) image files with a stitched model', async (out, f, files, { signal }) => {
    await useBackend(out, f.backend);
    const { predictions } = await predict<TaskResult>(f.model, files, { batchSize: f.batchSize, signal });
    out.result({ predictions }, () => predictions.map((x) => `${x.file}\t${describeResult(x)}`).join('\n'));
  });
  cmd.requiredOption('--model <model.json>', 'stitched model').option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 32).addHelpText('after', '\nExample:\n  splitfit predict --model model/model.json new-photo.png more-photos/\n');
  backendOption(cmd);
}
