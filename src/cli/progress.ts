/**
 * What a person sees while a command runs. Three modes:
 *
 * - `tty`: one status line that always fits the terminal (`columns - 1`, so it never wraps: a wrapped
 *   line cannot be erased by `\r\x1b[K`, which clears only the last row), redrawn in place, with rate,
 *   elapsed time and ETA; permanent lines (one per epoch, Keras style) are printed above it.
 * - `lines`: stderr is a pipe or a CI log: no control characters; the status as a plain line at most
 *   every `interval` ms and once when a step completes; permanent lines as they come.
 * - `quiet`: nothing (`--quiet`, and `--json`, whose events are JSON lines on stdout instead).
 */
import type { EpochLog } from '../train/fit.js';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  /** Terminal width; read at every redraw so a resized terminal is followed. */
  columns?: number;
}

export type ProgressMode = 'tty' | 'lines' | 'quiet';

export interface ProgressRendererOptions {
  mode: ProgressMode;
  /** Milliseconds; injectable for tests. @default performance.now */
  now?: () => number;
  /** `lines` mode: least time between two status lines of one step, in ms. @default 10000 */
  interval?: number;
}

/** What a status update counts: `img` for extraction, `epoch` for training. */
export interface StatusUpdate {
  label: string;
  done: number;
  total: number;
  unit: string;
  /** When the step began (`now()` clock), if before its first update — e.g. the start of epoch 1. */
  startedAt?: number;
}

const FALLBACK_COLUMNS = 80;
const MAX_BAR = 40;
const MIN_BAR = 10;

export class ProgressRenderer {
  readonly mode: ProgressMode;
  readonly #stream: ProgressStream;
  readonly #now: () => number;
  readonly #interval: number;
  /** The status line currently drawn (tty) and what it shows. */
  #shown = false;
  #current: StatusUpdate | undefined;
  /** When the current step (label) started and when its last plain line was printed. */
  #step: { label: string; started: number; lastLine: number } | undefined;

  constructor(stream: ProgressStream, options: ProgressRendererOptions) {
    this.mode = options.mode;
    this.#stream = stream;
    this.#now = options.now ?? (() => performance.now());
    this.#interval = options.interval ?? 10_000;
  }

  /** The status of the running step. A new label starts a new step (its clock restarts). */
  status(update: StatusUpdate): void {
    if (this.mode === 'quiet') return;
    const now = this.#now();
    if (this.#step?.label !== update.label) this.#step = { label: update.label, started: update.startedAt ?? now, lastLine: -Infinity };
    const elapsed = (now - this.#step.started) / 1000;
    this.#current = update;
    if (this.mode === 'tty') {
      this.#stream.write(`\r\x1b[K${formatStatus(update, elapsed, this.#columns())}`);
      this.#shown = true;
      if (update.done >= update.total) this.clear();
      return;
    }
    const finished = update.done >= update.total;
    if (finished || now - this.#step.lastLine >= this.#interval) {
      this.#step.lastLine = now;
      this.#stream.write(`${formatStatus(update, elapsed, Number.POSITIVE_INFINITY, false)}\n`);
    }
  }

  /** A permanent line (an epoch's metrics): printed above the status line, which is redrawn under it. */
  line(text: string): void {
    if (this.mode === 'quiet') return;
    const redraw = this.#shown;
    this.clear();
    this.#stream.write(`${text}\n`);
    if (redraw && this.#current && this.#current.done < this.#current.total && this.#step) {
      const elapsed = (this.#now() - this.#step.started) / 1000;
      this.#stream.write(formatStatus(this.#current, elapsed, this.#columns()));
      this.#shown = true;
    }
  }

  /** The renderer's clock, for `startedAt`. */
  now(): number {
    return this.#now();
  }

  /** Erases the status line (before other output, or at the end); a no-op when none is drawn. */
  clear(): void {
    if (!this.#shown) return;
    this.#stream.write('\r\x1b[K');
    this.#shown = false;
  }

  #columns(): number {
    const c = this.#stream.columns;
    return c !== undefined && Number.isFinite(c) && c > 0 ? c : FALLBACK_COLUMNS;
  }
}

/**
 * `extract  45% [#########...........] 120/266  12.3 img/s  elapsed 0:10  ETA 0:12`, at most
 * `columns - 1` characters: the bar shrinks first, then the least useful fields go (elapsed, rate,
 * the bar itself; the count and ETA stay longest), and only then is the line cut. Without `bar` (plain lines for logs): all fields, no bar.
 */
export function formatStatus(u: StatusUpdate, elapsedSeconds: number, columns: number, bar = true): string {
  const frac = u.total > 0 ? Math.min(1, Math.max(0, u.done / u.total)) : 1;
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  const count = `${u.done}/${u.total}`;
  const rate = formatRate(u.done, elapsedSeconds, u.unit);
  const eta = u.done >= u.total ? 'done' : u.done > 0 && elapsedSeconds > 0 ? `ETA ${formatDuration(((u.total - u.done) * elapsedSeconds) / u.done)}` : 'ETA --:--';
  const elapsed = `elapsed ${formatDuration(elapsedSeconds)}`;
  const limit = columns - 1;
  // Field sets from the richest to the barest; the first that fits with a bar of MIN_BAR wins.
  const layouts: string[][] = [
    [count, rate, elapsed, eta],
    [count, rate, eta],
    [count, eta],
  ];
  const head = `${u.label} ${pct}`;
  if (!bar) return [head, count, rate, elapsed, eta].filter((f) => f !== '').join('  ');
  for (const fields of layouts) {
    const tail = fields.filter((f) => f !== '').join('  ');
    const fixed = head.length + 1 + 2 + 1 + tail.length; // "head [bar] tail"
    const room = Math.min(MAX_BAR, limit - fixed);
    if (room >= MIN_BAR) {
      const filled = Math.round(frac * room);
      return `${head} [${'#'.repeat(filled)}${'.'.repeat(room - filled)}] ${tail}`;
    }
  }
  return `${head} ${count}  ${eta}`.slice(0, Math.max(0, limit));
}

/** `12.3 img/s` when at least one per second, else `4.1 s/epoch`; empty before there is a rate. */
export function formatRate(done: number, elapsedSeconds: number, unit: string): string {
  if (done <= 0 || elapsedSeconds <= 0) return '';
  const perSecond = done / elapsedSeconds;
  if (perSecond >= 1) return `${perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1)} ${unit}/s`;
  return `${(elapsedSeconds / done).toFixed(1)} s/${unit}`;
}

/** `0:07`, `12:03`, `1:02:03`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** One epoch's metrics as the training loop reports them (internal fields such as `generation` are ignored). */
export type EpochMetrics = Pick<EpochLog, 'loss' | 'acc' | 'valLoss' | 'valAcc' | 'valAuc' | 'seconds'>;

/**
 * Keras-style permanent line: `epoch  3/20  loss 0.4321 acc 0.8750 | val loss 0.5000 acc 0.8000 auc 0.9000  0.4 s`.
 * Fits `columns - 1` by dropping, in order, the epoch time and the validation AUC; a permanent line
 * may wrap in a terminal narrower than that, which leaves nothing stale behind.
 */
export function formatEpoch(epoch: number, epochs: number, m: EpochMetrics, columns = Number.POSITIVE_INFINITY): string {
  const n = String(epochs).length;
  const head = `epoch ${String(epoch).padStart(n)}/${epochs}  loss ${m.loss.toFixed(4)} acc ${m.acc.toFixed(4)}`;
  const val = m.valLoss === undefined ? '' : ` | val loss ${m.valLoss.toFixed(4)} acc ${(m.valAcc ?? Number.NaN).toFixed(4)}`;
  const auc = m.valAuc === undefined ? '' : ` auc ${m.valAuc.toFixed(4)}`;
  const time = `  ${m.seconds < 10 ? m.seconds.toFixed(2) : m.seconds.toFixed(1)} s`;
  for (const line of [head + val + auc + time, head + val + auc, head + val]) if (line.length <= columns - 1) return line;
  return head + val;
}
