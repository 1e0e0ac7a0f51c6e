import type { Command } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { stat } from 'node:fs/promises';
import { openDataSource, openFiles } from '../data/sources.js';
import type { Sample } from '../data/types.js';
import { SplitfitError } from '../errors.js';
import { loadPredictor, predictSamples } from '../infer/predictor.js';
import { argmaxRows } from '../train/metrics.js';
import { backendOption, type CommonFlags, defineCommand, useBackend } from './command.js';
import { positiveInt } from './parse.js';

interface Flags extends CommonFlags {
  model: string;
  batchSize: number;
  backend: BackendChoice;
}

export function registerPredict(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'predict [files...]', 'classify image files with a stitched model', async (out, f, files, { signal }) => {
    if (files.length === 0) throw new SplitfitError('SPLITFIT_USAGE', 'no image files given');
    await useBackend(out, f.backend);
    const p = await loadPredictor(f.model);
    const samples = await expand(files);
    const { probs, k } = await predictSamples(p, samples, f.batchSize, signal);
    const labels = p.labels ?? Array.from({ length: k }, (_, i) => String(i));
    const best = argmaxRows(probs, k);
    const predictions = samples.map((s, i) => ({
      file: s.source,
      label: labels[best[i]!]!,
      probability: probs[i * k + best[i]!]!,
      probabilities: Object.fromEntries(labels.map((l, j) => [l, probs[i * k + j]!])),
    }));
    out.result({ predictions }, () => predictions.map((x) => `${x.file}\t${x.label}\t${x.probability.toFixed(4)}`).join('\n'));
  });
  cmd.requiredOption('--model <model.json>', 'stitched model').option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 32).addHelpText('after', '\nExample:\n  splitfit predict --model model/model.json new-photo.png more-photos/\n');
  backendOption(cmd);
}

/** Files as given; folders contribute every image below them, copies included (one answer per file). */
async function expand(paths: readonly string[]): Promise<Sample[]> {
  const out: Sample[] = [];
  for (const path of paths) {
    const isDir = await stat(path).then((s) => s.isDirectory(), () => false);
    if (!isDir) {
      out.push(...(await openFiles([path])).samples);
      continue;
    }
    const source = await openDataSource(path, { labels: 'none' });
    out.push(...[...source.samples, ...(source.duplicates ?? [])].sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0)));
  }
  return out;
}
