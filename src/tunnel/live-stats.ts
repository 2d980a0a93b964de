// The gateway's last minutes, for the dashboard's live chart: every interval, the tunnels opened and the bytes moved
// since the previous sample, as rates, in a ring buffer. It reads counters that exist anyway (tailgate_tunnels_total and
// the usage recorder's per-device byte totals, sampling open tunnels first so long ones count while they run): nothing
// is added per tunnel or per chunk.
import type { Metrics } from './metrics.js';
import type { UsageRecorder } from './usage.js';

export interface LivePoint {
  /** The end of the interval, ms since epoch. */
  t: number;
  tunnelsPerSecond: number;
  bytesUpPerSecond: number;
  bytesDownPerSecond: number;
}

export interface LiveStatsOptions {
  metrics: Metrics;
  /** Absent: bytes are not sampled (rates of 0). */
  usage?: UsageRecorder | undefined;
  intervalMs?: number;
  /** How much history is kept. */
  windowMs?: number;
  /** Counts kept by other processes of this gateway (its workers), added to this one's. */
  others?: (() => Promise<LiveTotals>) | undefined;
  now?: () => number;
}

interface Reading {
  t: number;
  tunnels: number;
  up: number;
  down: number;
}

async function counterSum(metric: Metrics['tunnelsTotal'] | Metrics['tunnelsOpen']): Promise<number> {
  let sum = 0;
  for (const v of (await metric.get()).values) sum += v.value;
  return sum;
}

/** What a process of the gateway has counted since it started, and holds open now. */
export interface LiveTotals {
  tunnels: number;
  up: number;
  down: number;
  open: number;
}

/** This process's totals (open tunnels sampled first, so long ones count while they run). */
export async function liveTotals(metrics: Metrics, usage: UsageRecorder | undefined): Promise<LiveTotals> {
  let up = 0;
  let down = 0;
  if (usage !== undefined) {
    usage.sample();
    for (const [u, d] of usage.deviceBytes.values()) {
      up += u;
      down += d;
    }
  }
  return { tunnels: await counterSum(metrics.tunnelsTotal), up, down, open: await counterSum(metrics.tunnelsOpen) };
}

export class LiveStats {
  readonly intervalMs: number;
  private readonly ring: LivePoint[] = [];
  private readonly capacity: number;
  /** Where the next point goes once the ring is full. */
  private head = 0;
  private last: Reading | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;
  private readonly now: () => number;

  constructor(private readonly opts: LiveStatsOptions) {
    this.intervalMs = opts.intervalMs ?? 2_000;
    this.capacity = Math.max(1, Math.ceil((opts.windowMs ?? 600_000) / this.intervalMs));
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Takes one reading; from the second on, adds the rates since the one before. */
  async sample(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const reading = await this.read();
      const prev = this.last;
      this.last = reading;
      const seconds = prev === undefined ? 0 : (reading.t - prev.t) / 1000;
      if (prev === undefined || seconds <= 0) return;
      // A counter that went down (a device forgotten) counts as no traffic rather than a negative rate.
      const rate = (now: number, before: number) => Math.max(0, now - before) / seconds;
      this.push({
        t: reading.t,
        tunnelsPerSecond: rate(reading.tunnels, prev.tunnels),
        bytesUpPerSecond: rate(reading.up, prev.up),
        bytesDownPerSecond: rate(reading.down, prev.down),
      });
    } finally {
      this.sampling = false;
    }
  }

  private async read(): Promise<Reading> {
    const own = await liveTotals(this.opts.metrics, this.opts.usage);
    const others = await this.opts.others?.();
    if (others === undefined) return { t: this.now(), tunnels: own.tunnels, up: own.up, down: own.down };
    return { t: this.now(), tunnels: own.tunnels + others.tunnels, up: own.up + others.up, down: own.down + others.down };
  }

  private push(point: LivePoint): void {
    if (this.ring.length < this.capacity) {
      this.ring.push(point);
      return;
    }
    this.ring[this.head] = point;
    this.head = (this.head + 1) % this.capacity;
  }

  /** The points kept, oldest first. */
  series(): LivePoint[] {
    return [...this.ring.slice(this.head), ...this.ring.slice(0, this.head)];
  }

  /** Tunnels and forwarded requests open now (tailgate_tunnels_open). */
  async tunnelsOpen(): Promise<number> {
    const own = await counterSum(this.opts.metrics.tunnelsOpen);
    return this.opts.others === undefined ? own : own + (await this.opts.others()).open;
  }
}
