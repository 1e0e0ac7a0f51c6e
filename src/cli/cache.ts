import type { Command } from 'commander';
import { FeatureCache } from '../cache/feature-cache.js';
import { fingerprintsInUse } from '../extract/in-use.js';
import { type CommonFlags, defineCommand } from './command.js';

interface Flags extends CommonFlags {
  cache: string;
  repair?: boolean;
  dryRun?: boolean;
}

function withCache(cmd: Command): Command {
  return cmd.option('--cache <dir>', 'cache directory', './cache');
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('inspect and maintain a feature cache');
  withCache(
    defineCommand<Flags>(cache, 'stats', 'samples, bytes, and entries per fingerprint', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: 'cache stats' });
      const s = await c.stats();
      out.result(s, () =>
        [
          `${s.samples} samples, ${s.bytes} bytes`,
          ...s.fingerprints.map((x) => `  ${x.fingerprint.slice(0, 16)}  ${x.entries} entries, ${x.views} views, generation ${x.generation}, ${x.bytes} bytes`),
        ].join('\n'),
      );
    }),
  );
  withCache(
    defineCommand<Flags>(cache, 'verify', 'check every entry’s header and CRC; exit 1 if any is corrupt', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: 'cache verify' });
      const r = await c.verify({ repair: f.repair === true });
      out.result(r, () =>
        [`checked ${r.checked}, corrupt ${r.corrupt.length}${f.repair ? ' (deleted; rerun cache-features to re-extract them)' : ''}`, ...r.corrupt.map((x) => `  ${x.fingerprint.slice(0, 16)} ${x.key}: ${x.reason}`)].join('\n'),
      );
      if (!r.ok && !f.repair) process.exitCode = 1;
    }).option('--repair', 'delete corrupt entries (cache-features then re-extracts them)'),
  );
  withCache(
    defineCommand<Flags>(cache, 'gc', 'drop feature namespaces whose model no longer matches, after saying which', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: 'cache gc' });
      const use = await fingerprintsInUse(c);
      for (const s of use.stale) out.warn(`drop ${s.fingerprint.slice(0, 16)}: ${s.reason}`);
      const r = await c.gc(use.inUse, { dryRun: f.dryRun === true });
      out.result({ ...r, kept: use.inUse, dryRun: f.dryRun === true }, () =>
        r.dropped.length === 0 ? 'nothing to drop' : `${f.dryRun ? 'would drop' : 'dropped'} ${r.dropped.map((d) => `${d.fingerprint.slice(0, 16)} (${d.entries} entries)`).join(', ')}`,
      );
    }).option('--dry-run', 'only say what would be dropped'),
  );
  withCache(
    defineCommand<Flags>(cache, 'clear', 'delete everything in the cache', async (out, f) => {
      await using c = await FeatureCache.open(f.cache, { createIfMissing: false, command: 'cache clear' });
      await c.clear();
      out.result({ cleared: true }, () => `cleared ${f.cache}`);
    }),
  );
}
