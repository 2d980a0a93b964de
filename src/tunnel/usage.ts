// Usage accounting: per key and device, in hourly buckets, kept in memory and added to the database in one statement
// per flush. The data path only touches a few Map entries per tunnel (opened, closed, refused, failed); bytes of open
// tunnels are read from their sockets' own counters at each flush, so a long tunnel is counted while it runs without
// any per-chunk work or per-tunnel timer.
import type { Logger } from '../log.js';
import type { UsageDelta, UsageStore } from '../store/types.js';
import type { QuotaLedger } from './quota.js';

const HOUR_MS = 3_600_000;

/** Something open whose bytes are counted while it runs (a relayed tunnel, a forwarded request). */
export interface UsageMeter {
  /** Reports the bytes moved since its last report with recorder.bytes(). */
  reportUsage(recorder: UsageRecorder): void;
}

class Cell implements UsageDelta {
  bytesUp = 0;
  bytesDown = 0;
  tunnels = 0;
  refused = 0;
  failures = 0;
  constructor(
    readonly hour: number,
    readonly keyId: number,
    readonly deviceId: number,
  ) {}
}

/** Cells by hour, key and device. */
type Index = Map<number, Map<number, Map<number, Cell>>>;

/** A key whose quota period's total is kept fresh (QuotaLedger.track). */
interface Tracked {
  since: number;
  /** The database's total since `since`, as of the last refresh (plus this gateway's batches written since). */
  stored: number;
  /** Bytes in cells not yet written (held, or in flight). */
  pending: number;
}

export interface UsageRecorderOptions {
  store: Pick<UsageStore, 'addUsage' | 'keyBytesSince' | 'keyNames'>;
  log: Logger;
  /** How often deltas are written (and open tunnels sampled). */
  flushMs: number;
  /** Most (hour, key, device) cells held in memory; past it, new cells are dropped (counted and logged). */
  maxCells: number;
  /** Wall clock, ms since epoch (tests move it). */
  now?: () => number;
}

export class UsageRecorder implements QuotaLedger {
  private index: Index = new Map();
  private hour = -1;
  private hourEnd = -1;
  private hourCells: Map<number, Map<number, Cell>> = new Map();
  /**
   * Buckets held (in the index) and in flight together, each counted once: what the bound applies to. A bucket that
   * is being written gets a twin in the index for what comes meanwhile; the twin is not counted while its original is
   * in flight (merged back if the write fails, counted if it succeeds), so a held bucket always keeps counting.
   */
  private cellCount = 0;
  private inflight: Cell[] | undefined;
  private inflightIndex: Index | undefined;
  private twins: Cell[] = [];
  private readonly meters = new Set<UsageMeter>();
  private readonly tracked = new Map<number, Tracked>();
  /** Bytes per device (and per key, for key labels) since start: what the metrics export. */
  readonly deviceBytes = new Map<number, [up: number, down: number]>();
  readonly keyBytes = new Map<number, [up: number, down: number]>();
  /** Whether keyBytes is kept (TAILGATE_METRICS_KEY_LABELS), with the keys' names, refreshed every flush. */
  keepKeyBytes = false;
  readonly keyNames = new Map<number, string | null>();
  /** Deltas dropped because the bound was reached (the database down for long): bytes and other counts. */
  droppedBytes = 0;
  droppedEvents = 0;
  private timer: NodeJS.Timeout | undefined;
  /** All database work, one at a time: a refresh must not read around a write of this gateway's own. */
  private queue: Promise<void> = Promise.resolve();
  /** Flushes queued or running. */
  private flushes = 0;
  private failing = false;
  /** Dropping since the last successful write (logged once). */
  private dropping = false;
  private closed = false;
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(private readonly opts: UsageRecorderOptions) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log.child({ component: 'usage' });
  }

  start(): void {
    // A flush still waiting for the database is not queued behind again: one at a time is enough.
    this.timer = setInterval(() => {
      if (this.flushes === 0) void this.flush();
    }, this.opts.flushMs);
    this.timer.unref();
  }

  /** Cells held in memory, not yet written. */
  get held(): number {
    return this.cellCount;
  }

  get openMeters(): number {
    return this.meters.size;
  }

  // ---- The data path ----

  private cell(keyId: number, deviceId: number): Cell | undefined {
    const now = this.now();
    if (now >= this.hourEnd || now < this.hour) this.roll(now);
    let byKey = this.hourCells.get(keyId);
    if (byKey === undefined) this.hourCells.set(keyId, (byKey = new Map()));
    const c = byKey.get(deviceId);
    if (c !== undefined) return c;
    return this.create(byKey, this.hour, keyId, deviceId);
  }

  private create(byKey: Map<number, Cell>, hour: number, keyId: number, deviceId: number): Cell | undefined {
    const twin = this.inflightIndex?.get(hour)?.get(keyId)?.has(deviceId) === true;
    if (!twin && this.cellCount >= this.opts.maxCells) return undefined;
    const c = new Cell(hour, keyId, deviceId);
    byKey.set(deviceId, c);
    if (twin) this.twins.push(c);
    else this.cellCount++;
    return c;
  }

  private roll(now: number): void {
    this.hour = now - (now % HOUR_MS);
    this.hourEnd = this.hour + HOUR_MS;
    let cells = this.index.get(this.hour);
    if (cells === undefined) this.index.set(this.hour, (cells = new Map()));
    this.hourCells = cells;
  }

  private dropped(bytes: number): void {
    if (bytes > 0) this.droppedBytes += bytes;
    else this.droppedEvents++;
    if (!this.dropping) {
      this.dropping = true;
      this.log.error({ maxCells: this.opts.maxCells }, 'usage held in memory reached TAILGATE_USAGE_MAX_CELLS: new usage is being dropped until the database takes the backlog');
    }
  }

  /** A tunnel (or forwarded request) started through a device. */
  opened(keyId: number, deviceId: number): void {
    const c = this.cell(keyId, deviceId);
    if (c === undefined) return this.dropped(0);
    c.tunnels++;
  }

  /** Admission refused a tunnel or request of the key (before any device was chosen). */
  refused(keyId: number): void {
    const c = this.cell(keyId, 0);
    if (c === undefined) return this.dropped(0);
    c.refused++;
  }

  /** A connection through the device could not be made (deviceId 0: no device was eligible). */
  failed(keyId: number, deviceId: number): void {
    const c = this.cell(keyId, deviceId);
    if (c === undefined) return this.dropped(0);
    c.failures++;
  }

  /** Bytes moved for the key through the device: up = from the client, down = to the client. */
  bytes(keyId: number, deviceId: number, up: number, down: number): void {
    if (up === 0 && down === 0) return;
    const c = this.cell(keyId, deviceId);
    if (c === undefined) return this.dropped(up + down);
    c.bytesUp += up;
    c.bytesDown += down;
    let d = this.deviceBytes.get(deviceId);
    if (d === undefined) this.deviceBytes.set(deviceId, (d = [0, 0]));
    d[0] += up;
    d[1] += down;
    if (this.keepKeyBytes) {
      let k = this.keyBytes.get(keyId);
      if (k === undefined) this.keyBytes.set(keyId, (k = [0, 0]));
      k[0] += up;
      k[1] += down;
    }
    const q = this.tracked.get(keyId);
    if (q !== undefined) q.pending += up + down;
  }

  /** Counts the meter's bytes at every flush from now on. */
  add(meter: UsageMeter): void {
    this.meters.add(meter);
  }

  /** The meter is done: its last bytes are reported now. */
  end(meter: UsageMeter): void {
    if (!this.meters.delete(meter)) return;
    meter.reportUsage(this);
  }

  /** Reads every open meter's bytes since its last report. */
  sample(): void {
    for (const m of this.meters) m.reportUsage(this);
  }

  // ---- Quotas ----

  usedSince(keyId: number, periodStart: number): number {
    const q = this.tracked.get(keyId);
    if (q === undefined || q.since !== periodStart) {
      this.track(keyId, periodStart);
      return this.tracked.get(keyId)!.pending;
    }
    return q.stored + q.pending;
  }

  track(keyId: number, periodStart: number): void {
    const q = this.tracked.get(keyId);
    if (q !== undefined && q.since === periodStart) return;
    // What this gateway holds for the key counts at once; the database's total follows with the refresh below.
    let pending = 0;
    for (const c of this.unwritten()) if (c.keyId === keyId) pending += c.bytesUp + c.bytesDown;
    this.tracked.set(keyId, { since: periodStart, stored: 0, pending });
    if (!this.closed) this.enqueue(() => this.refresh([keyId]));
  }

  private *unwritten(): Iterable<Cell> {
    for (const byKey of this.index.values()) for (const byDevice of byKey.values()) yield* byDevice.values();
    if (this.inflight !== undefined) yield* this.inflight;
  }

  private async refresh(keyIds: number[]): Promise<void> {
    const asked = keyIds.map((keyId) => ({ keyId, since: this.tracked.get(keyId)!.since }));
    if (asked.length === 0) return;
    const totals = await this.opts.store.keyBytesSince(asked);
    for (const [i, a] of asked.entries()) {
      const q = this.tracked.get(a.keyId);
      if (q !== undefined && q.since === a.since) q.stored = totals[i]!;
    }
  }

  // ---- Writing ----

  private enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.queue.then(work);
    this.queue = run.catch((err: Error) => this.log.debug({ err: err.message }, 'usage database work failed'));
    return this.queue;
  }

  /**
   * Samples open meters and writes what is held, after any flush already running (so what was recorded before the call
   * is written when it resolves, database permitting); on failure keeps it for the next flush. Never rejects.
   */
  flush(): Promise<void> {
    this.flushes++;
    return this.enqueue(async () => {
      try {
        await this.write();
      } finally {
        this.flushes--;
      }
    });
  }

  private async write(): Promise<void> {
    this.sample();
    const batch: Cell[] = [];
    const held = this.index;
    for (const byKey of held.values()) for (const byDevice of byKey.values()) for (const c of byDevice.values()) batch.push(c);
    this.index = new Map();
    this.hourEnd = -1;
    if (batch.length > 0) {
      // One order for every gateway, so two batches touching the same rows lock them in the same order.
      batch.sort((a, b) => a.hour - b.hour || a.keyId - b.keyId || a.deviceId - b.deviceId);
      this.inflight = batch;
      this.inflightIndex = held;
      try {
        await this.opts.store.addUsage(batch);
      } catch (err) {
        this.inflight = undefined;
        this.inflightIndex = undefined;
        this.twins = [];
        this.putBack(batch);
        if (!this.failing) {
          this.failing = true;
          this.log.warn({ err: (err as Error).message, cells: this.cellCount, maxCells: this.opts.maxCells }, 'usage could not be written; kept in memory and retried every flush');
        }
        return;
      }
      this.inflight = undefined;
      this.inflightIndex = undefined;
      this.cellCount += this.twins.length - batch.length;
      this.twins = [];
      for (const c of batch) {
        const q = this.tracked.get(c.keyId);
        if (q === undefined) continue;
        const bytes = c.bytesUp + c.bytesDown;
        q.pending -= bytes;
        if (c.hour >= q.since) q.stored += bytes;
      }
      this.dropping = false;
      if (this.failing) {
        this.failing = false;
        this.log.info({ cells: batch.length, droppedBytes: this.droppedBytes, droppedEvents: this.droppedEvents }, 'usage written again after the database came back');
      }
    }
    await this.refresh([...this.tracked.keys()]);
    if (this.keepKeyBytes && this.keyBytes.size > 0) {
      // A deleted key keeps the name it had.
      for (const [id, name] of await this.opts.store.keyNames([...this.keyBytes.keys()])) this.keyNames.set(id, name);
    }
  }

  /** A batch that was not written goes back, merged with what came meanwhile. */
  private putBack(batch: Cell[]): void {
    for (const c of batch) {
      let byKey = this.index.get(c.hour);
      if (byKey === undefined) this.index.set(c.hour, (byKey = new Map()));
      let byDevice = byKey.get(c.keyId);
      if (byDevice === undefined) byKey.set(c.keyId, (byDevice = new Map()));
      const mine = byDevice.get(c.deviceId);
      if (mine === undefined) {
        byDevice.set(c.deviceId, c);
        continue;
      }
      mine.bytesUp += c.bytesUp;
      mine.bytesDown += c.bytesDown;
      mine.tunnels += c.tunnels;
      mine.refused += c.refused;
      mine.failures += c.failures;
    }
  }

  /**
   * The last flush, at shutdown, after the tunnels were closed: what is still open is counted as it is now. What cannot
   * be written then is lost, and logged with its size.
   */
  async close(): Promise<void> {
    if (this.closed) return this.queue;
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
    if (this.cellCount > 0) this.log.error({ cells: this.cellCount }, 'usage not written at shutdown (database unavailable); it is lost');
  }
}
