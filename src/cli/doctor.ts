import type { Command } from 'commander';
import { doctor } from '../backend/doctor.js';
import { defineCommand } from './command.js';
import { VERSION } from './version.js';

export function registerDoctor(program: Command): void {
  const cmd = defineCommand(program, 'doctor', 'which backends work here, versions, and how to enable native TensorFlow', async (out) => {
    const report = await doctor(VERSION);
    out.result(report, () =>
      [
        `backend (auto): ${report.backend}`,
        `available: ${report.available.join(', ')}`,
        report.native.ok ? `native TensorFlow: ok (${report.native.tfVersion ?? '?'})` : `native TensorFlow: unavailable: ${report.native.reason}`,
        ...report.unavailable.filter((u) => u.name !== 'tensorflow').map((u) => `${u.name}: unavailable: ${u.reason}`),
        `node ${report.versions.node}, tfjs ${report.versions.tfjs}, splitfit ${report.versions.splitfit}`,
      ].join('\n'),
    );
  });
  cmd.addHelpText('after', '\nExample:\n  splitfit doctor --json\n');
}
