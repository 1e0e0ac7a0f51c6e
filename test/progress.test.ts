import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeOutput } from '../src/cli/output.js';
import { formatDuration, formatEpoch, formatRate, formatStatus, ProgressRenderer, type ProgressStream } from '../src/cli/progress.js';
import { backendArgs, CLI, runCli } from './helpers/cli.js';
import { makeToyFixture, splitfitStderr, type ToyFixture } from './helpers/reliability.js';

/** A stream that records what was written, as a terminal of `columns` (or a pipe when `columns` is undefined). */
function fakeStream(columns?: number): ProgressStream & { text: string } {
  return {
    text: '',
    isTTY: columns !== undefined,
    ...(columns === undefined ? {} : { columns }),
    write(chunk: string) {
      this.text += chunk;
      return true;
    },
  };
}

/** What a terminal shows: `\r\x1b[K` erases the current row; returns every row ever left on screen plus the live one. */
function screen(text: string): { rows: string[]; live: string } {
  const rows: string[] = [];
  let row = '';
  for (const part of text.split(/(\r\x1b\[K|\n)/)) {
    if (part === '\r\x1b[K') row = '';
    else if (part === '\n') {
      rows.push(row);
      row = '';
    } else row += part;
  }
  return { rows, live: row };
}

/** Every status line drawn (each redraw starts with the erase sequence). */
function drawn(text: string): string[] {
  return text.split('\r\x1b[K').map((s) => s.split('\n').at(-1)!).filter((s) => s !== '');
}

const log = (i: number) => ({ loss: 1 / i, acc: 0.5 + i / 100, valLoss: 1.1 / i, valAcc: 0.4 + i / 100, valAuc: 0.6 + i / 100, seconds: 0.4, generation: 0, viewsRead: [12] });

describe('status line on a TTY', () => {
  for (const columns of [80, 200]) {
    it(`fits ${columns} columns with rate, elapsed and ETA, and is erased when the step completes`, () => {
      const stream = fakeStream(columns);
      let t = 0;
      const r = new ProgressRenderer(stream, { mode: 'tty', now: () => t });
      for (let done = 0; done <= 266; done += 7) {
        t = done * 50; // 20 img/s
        r.status({ label: 'extract', done, total: 266, unit: 'img' });
      }
      r.status({ label: 'extract', done: 266, total: 266, unit: 'img' });
      const lines = drawn(stream.text);
      expect(lines.length).toBeGreaterThan(30);
      for (const l of lines) expect(l.length).toBeLessThanOrEqual(columns - 1);
      const mid = lines.find((l) => l.includes(' 140/266'))!;
      expect(mid).toMatch(/^extract  52% \[#+\.+\] 140\/266 {2}20\.0 img\/s {2}elapsed 0:07 {2}ETA 0:06$/);
      expect(mid.match(/\[([#.]+)\]/)![1]!.length).toBe(columns === 200 ? 40 : 79 - 'extract  52% [] 140/266  20.0 img/s  elapsed 0:07  ETA 0:06'.length);
      // Nothing stays on screen: the finished bar is erased, no newline was written.
      expect(screen(stream.text)).toEqual({ rows: [], live: '' });
    });
  }

  it('drops fields, not the fit, in a narrow terminal', () => {
    const s = formatStatus({ label: 'extract', done: 5, total: 10, unit: 'img' }, 5, 40);
    expect(s.length).toBeLessThanOrEqual(39);
    expect(s).toContain('5/10');
    expect(s).toContain('ETA 0:05');
    expect(s).not.toContain('elapsed');
    expect(formatStatus({ label: 'extract', done: 5, total: 10, unit: 'img' }, 5, 12).length).toBeLessThanOrEqual(11);
  });

  it('redraws the status under each permanent epoch line, so every epoch leaves exactly one row', () => {
    const stderr = fakeStream(80);
    const stdout = fakeStream(80);
    const out = makeOutput({}, { stdout, stderr });
    for (let e = 1; e <= 20; e++) out.epoch(e, 20, log(e));
    out.result({}, () => 'trained 20 epochs');
    const { rows, live } = screen(stderr.text);
    expect(live).toBe('');
    expect(rows).toHaveLength(20);
    rows.forEach((row, i) => {
      expect(row.length).toBeLessThanOrEqual(79);
      expect(row).toMatch(new RegExp(`^epoch ${String(i + 1).padStart(2)}/20  loss \\d\\.\\d{4} acc \\d\\.\\d{4} \\| val loss \\d\\.\\d{4} acc \\d\\.\\d{4} auc \\d\\.\\d{4}`));
      expect(row).not.toMatch(/generation|viewsRead/);
    });
    // Between epochs the live row is the training status with its ETA.
    expect(drawn(stderr.text).some((l) => /^training {2}50% \[[#.]+\] 10\/20 {2}.* ETA /.test(l))).toBe(true);
    expect(stdout.text).toBe('trained 20 epochs\n');
  });
});

describe('in a pipe (CI log)', () => {
  it('writes plain lines only: no control characters, status at most every interval plus the last one', () => {
    const stderr = fakeStream();
    let t = 0;
    const r = new ProgressRenderer(stderr, { mode: 'lines', now: () => t, interval: 10_000 });
    for (let done = 0; done <= 100; done++) {
      t = done * 1000; // one image a second, 100 s
      r.status({ label: 'extract', done, total: 100, unit: 'img' });
    }
    expect(stderr.text).not.toMatch(/[\r\x1b]/);
    const lines = stderr.text.trimEnd().split('\n');
    expect(lines).toHaveLength(11); // t = 0, 10, …, 100 s
    expect(lines[5]).toBe('extract  50%  50/100  1.0 img/s  elapsed 0:50  ETA 0:50');
    expect(lines.at(-1)).toBe('extract 100%  100/100  1.0 img/s  elapsed 1:40  done');
  });

  it('keeps one line per epoch and says where training stands now and then', () => {
    const stderr = fakeStream();
    const out = makeOutput({}, { stdout: fakeStream(), stderr });
    for (let e = 1; e <= 5; e++) out.epoch(e, 5, log(e));
    expect(stderr.text).not.toMatch(/[\r\x1b]/);
    const lines = stderr.text.trimEnd().split('\n');
    expect(lines.filter((l) => l.startsWith('epoch '))).toHaveLength(5);
    expect(lines.at(-1)).toMatch(/^training 100% {2}5\/5 .*done$/);
  });
});

describe('--quiet, --json and interruption', () => {
  it('--quiet prints the result and warnings only', () => {
    const stdout = fakeStream();
    const stderr = fakeStream(80);
    const out = makeOutput({ quiet: true }, { stdout, stderr });
    out.info('training on 36 samples');
    out.progress('extract', 3, 10);
    out.epoch(1, 2, log(1));
    out.warn('splitfit: a warning');
    out.result({}, () => 'done');
    expect(stderr.text).toBe('splitfit: a warning\n');
    expect(stdout.text).toBe('done\n');
  });

  it('--json keeps the machine events (with every field of the epoch log) and draws nothing', () => {
    const stdout = fakeStream();
    const stderr = fakeStream(80);
    const out = makeOutput({ json: true }, { stdout, stderr });
    out.progress('extract', 3, 10);
    out.epoch(1, 2, log(1));
    out.result({ ok: true }, () => 'human');
    expect(stderr.text).toBe('');
    expect(stdout.text.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([
      { event: 'extract', done: 3, total: 10 },
      { event: 'epoch', done: 1, total: 2, ...log(1) },
      { ok: true },
    ]);
  });

  it('a signal erases the status line and says how to resume', () => {
    const stderr = fakeStream(80);
    const out = makeOutput({}, { stdout: fakeStream(), stderr });
    out.progress('extract', 3, 10);
    out.interrupted('SIGINT');
    const { rows, live } = screen(stderr.text);
    expect(live).toBe('');
    expect(rows.filter((r) => r !== '')).toEqual(['interrupted (SIGINT) — stopping after the current step; what was done is kept: rerun the same command to resume (SIGINT again stops at once)']);
  });
});

describe('formatting', () => {
  it('durations, rates and the epoch line', () => {
    expect([0, 7.4, 59.6, 723, 3723].map(formatDuration)).toEqual(['0:00', '0:07', '1:00', '12:03', '1:02:03']);
    expect(formatRate(0, 3, 'img')).toBe('');
    expect(formatRate(300, 2, 'img')).toBe('150 img/s');
    expect(formatRate(3, 12.3, 'epoch')).toBe('4.1 s/epoch');
    const m = { loss: 0.43214, acc: 0.875, valLoss: 0.5, valAcc: 0.8, valAuc: 0.9, seconds: 0.42 };
    expect(formatEpoch(3, 20, m)).toBe('epoch  3/20  loss 0.4321 acc 0.8750 | val loss 0.5000 acc 0.8000 auc 0.9000  0.42 s');
    expect(formatEpoch(3, 20, m, 60)).toBe('epoch  3/20  loss 0.4321 acc 0.8750 | val loss 0.5000 acc 0.8000');
    expect(formatEpoch(3, 20, { loss: 0.5, acc: 0.75, seconds: 12.34 })).toBe('epoch  3/20  loss 0.5000 acc 0.7500  12.3 s');
  });
});

describe('through the CLI, stderr a pipe', () => {
  let fx: ToyFixture;
  let cache: string;
  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'splitfit-progress-'));
    fx = await makeToyFixture(dir, 8);
    cache = join(dir, 'cache');
    const made = await runCli(['cache-features', '--model', fx.model, '--boundary', fx.boundary, '--data', fx.data, '--cache', cache, '--quiet', ...backendArgs()]);
    expect(made.status, made.stderr).toBe(0);
    // --quiet: the result on stdout, nothing of splitfit's own on stderr.
    expect(made.stdout).toMatch(/^extracted 24, skipped 0/);
    expect(splitfitStderr(made.stderr)).toEqual([]);
  });

  it('--backend cpu --quiet: no tfjs "install our node backend" banner, nothing at all on stderr', async () => {
    const r = await runCli(['train-head', '--cache', cache, '--out', join(fx.dir, 'out-cpu'), '--epochs', '1', '--lr', '0.001', '--backend', 'cpu', '--quiet']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^trained 1 epochs: /);
  });

  it('the first SIGINT says at once how to resume, then the coded line; exit 130', async () => {
    const out = join(fx.dir, 'out-sigint');
    const child = spawn(process.execPath, [CLI, 'train-head', '--cache', cache, '--out', out, '--epochs', '100000', '--lr', '0.01', '--batch-size', '1', ...backendArgs()], {
      env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/^epoch +1\//m.test(stderr) && !child.killed) child.kill('SIGINT');
    });
    expect(await exited).toBe(130);
    const lines = splitfitStderr(stderr);
    expect(stderr).not.toMatch(/[\r\x1b]/);
    const at = lines.indexOf('interrupted (SIGINT) — stopping after the current step; what was done is kept: rerun the same command to resume (SIGINT again stops at once)');
    expect(at).toBeGreaterThan(0);
    expect(lines.at(-1)).toMatch(/^splitfit: SPLITFIT_INTERRUPTED: interrupted by SIGINT; .*rerun the same command to resume$/);
    expect(lines.slice(0, at).every((l) => /^(epoch|training) /.test(l))).toBe(true);
  });
});
