import type { Command } from 'commander';
import { inspectModel } from '../model/inspect.js';
import { loadModel } from '../model/io.js';
import { defineCommand } from './command.js';

export function registerInspect(program: Command): void {
  const cmd = defineCommand(program, 'inspect <model>', 'layers, output shapes, valid cuts, BatchNorm layers and parameter counts', async (out, _flags, [ref]) => {
    const info = inspectModel(await loadModel(ref!));
    out.result(info, () => {
      const rows = info.layers.map(
        (l) => `${l.isCut ? '✓' : ' '} ${l.name.padEnd(34)} ${l.className.padEnd(22)} ${JSON.stringify(l.outputShape).padEnd(22)} ${l.batchNorm ? 'BN' : ''}`,
      );
      return [
        `${info.name}: input ${JSON.stringify(info.inputShape)}, ${info.layers.length} layers, ${info.batchNormLayers} BatchNormalization`,
        `params: ${info.params.total} total, ${info.params.trainable} trainable`,
        '✓ = valid freeze boundary (graph cut)',
        ...rows,
      ].join('\n');
    });
  });
  cmd.addHelpText('after', '\nExample:\n  splitfit inspect mobilenet_v2\n');
}
