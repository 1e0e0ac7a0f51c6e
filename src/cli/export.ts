import { type Command, Option } from 'commander';
import type { BackendChoice } from '../backend/resolve.js';
import { exportModel } from '../job/export.js';
import { QUANTIZE_CHOICES, type Quantize } from '../model/quantize.js';
import { assertWritableFolder, backendOption, type CommonFlags, defineCommand, useBackend } from './command.js';

interface Flags extends CommonFlags {
  out: string;
  quantize?: Quantize;
  foldBatchNorm: boolean;
  sourceModel?: string;
  validationData?: string;
  backend: BackendChoice;
}

const mb = (bytes: number): string => (bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(2)} MB` : `${(bytes / 1024).toFixed(1)} KB`);

export function registerExport(program: Command): void {
  const cmd = defineCommand<Flags>(program, 'export <model-folder>', 'write a model folder again: quantized weights, base folded or unfolded, as one committed folder', async (out, f, args, { signal }) => {
    await assertWritableFolder(f.out, '--out');
    await useBackend(out, f.backend);
    const r = await exportModel({
      model: args[0]!,
      out: f.out,
      foldBatchNorm: f.foldBatchNorm,
      ...(f.quantize ? { quantize: f.quantize } : {}),
      ...(f.sourceModel ? { sourceModel: f.sourceModel } : {}),
      ...(f.validationData ? { validationData: f.validationData } : {}),
      signal,
    });
    out.result(r, () => {
      const s = r.bytes.source.weights;
      const e = r.bytes.exported.weights;
      const lines = [
        `weights: ${mb(s)} → ${mb(e)} (${r.quantize}, ${((100 * e) / s).toFixed(1)} % of the source); model.json ${r.bytes.exported.modelJson} bytes`,
        `base: ${r.baseExport}${r.rebuilt === 'as-is' ? '' : ` (re-stitched: ${r.rebuilt})`}`,
      ];
      if (r.accuracy) {
        const a = r.accuracy;
        lines.push(`accuracy on ${a.n} samples: source ${a.source.toFixed(4)}, exported ${a.exported.toFixed(4)} (${a.change >= 0 ? '+' : ''}${(100 * a.change).toFixed(2)} points)`);
      }
      lines.push(`wrote ${r.out} (${r.files.join(', ')}; committed as one)`);
      return lines.join('\n');
    });
  });
  cmd
    .requiredOption('--out <dir>', 'output folder (created in one step; an earlier export there is replaced in one step)')
    .addOption(new Option('--quantize <dtype>', 'store the weights quantized; stock tf.loadLayersModel dequantizes them').choices(QUANTIZE_CHOICES))
    .option('--no-fold-batch-norm', "export the source model's BatchNorm layers (re-stitches head/ onto the source model splitfit.json records)")
    .option('--source-model <model>', "the model the folder was cut from, when re-stitching needs it (--no-fold-batch-norm, or --quantize on a folded folder) and splitfit.json's has moved")
    .option('--validation-data <spec>', 'labeled data (folder, manifest or IDX): also print the accuracy of the source and the export')
    .addHelpText('after', '\nExample:\n  splitfit export model/ --out model-uint8/ --quantize uint8 --validation-data photos-test/\n');
  backendOption(cmd);
}
