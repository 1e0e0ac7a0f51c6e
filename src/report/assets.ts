import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { SplitfitError } from '../errors.js';

/**
 * The charting library, inlined into every report so that it opens from disk with no network:
 * Chart.js (UMD build, defines `window.Chart`) and its matrix chart type for the confusion matrix.
 * Neither package exports its UMD file, so it is found beside the package's main entry.
 */
const LIBRARIES = [
  { pkg: 'chart.js', file: 'chart.umd.min.js' },
  { pkg: 'chartjs-chart-matrix', file: 'chartjs-chart-matrix.min.js' },
] as const;

let cached: Promise<string[]> | undefined;

/** The libraries' source, each safe to put inside a `<script>` element. */
export function chartLibraries(): Promise<string[]> {
  cached ??= Promise.all(LIBRARIES.map(load));
  return cached;
}

async function load({ pkg, file }: (typeof LIBRARIES)[number]): Promise<string> {
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    path = join(dirname(require.resolve(pkg)), file);
  } catch (err) {
    throw new SplitfitError('SPLITFIT_IO', `the report's charting library ${pkg} is not installed; reinstall splitfit (npm ci)`, { cause: err });
  }
  const text = await readFile(path, 'utf8').catch((err: unknown) => {
    throw new SplitfitError('SPLITFIT_IO', `cannot read ${path} (${pkg}): reinstall splitfit (npm ci)`, { cause: err });
  });
  // A source map comment would make devtools fetch a file that is not there; `</script` would end the element.
  return text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n').replace(/<\/script/gi, '<\\/script');
}
