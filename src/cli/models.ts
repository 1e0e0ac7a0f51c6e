import type { Command } from 'commander';
import { BUNDLED_MODELS } from '../model/bundled.js';
import { defineCommand } from './command.js';

export function registerModels(program: Command): void {
  const cmd = defineCommand(program, 'models', 'list the bundled pretrained models (no download needed)', async (out) => {
    out.result({ models: BUNDLED_MODELS }, () =>
      BUNDLED_MODELS.map((m) => `${m.name}\n  ${m.description}\n  origin:  ${m.origin}\n  licence: ${m.licence}\n  suggested boundary: ${m.boundary}`).join('\n'),
    );
  });
  cmd.addHelpText('after', '\nExample:\n  splitfit models --json\n');
}
