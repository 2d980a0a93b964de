// Hostile clients: a child process of its own (the bench pins it to the endpoint core; test/faults spawns it too),
// driven over IPC like bench/loadgen.ts. Two kinds of attacker at once against a gateway's two proxy ports:
//  - stalled (slowloris): a pool of connections that each stop mid-handshake and never send another byte; every
//    one the gateway closes is replaced at once, so the pool stays full while the attack runs;
//  - garbage: workers that each, in a loop, connect, send bytes no proxy may accept, and wait for the close.
// Every connection's fate is recorded: who closed it and after how long, so the caller can prove the handshake
// timeout (stalled) and the immediate refusal (garbage) hold for all of them, not for a sample.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';

export interface Endpoint {
  host: string;
  port: number;
}

export interface AttackJob {
  type: 'start';
  http: Endpoint;
  socks: Endpoint;
  /** Stalled connections kept open at once. */
  stalled: number;
  /**
   * The source address of every hostile connection. The bench uses another loopback address than its well-behaved
   * clients': the gateway's brute-force throttle works per client address, and an attacker sharing the clients'
   * address would have them refused with it.
   */
  localAddress?: string;
  /** Garbage workers, each with one connection at a time. */
  garbageWorkers: number;
  /**
   * Garbage connections started per second at most, over all workers; unset: as fast as the gateway closes them. A
   * fixed rate gives every gateway the same attack (and bounds this process's CPU on the core it shares with the
   * load generator): unpaced, a gateway that refuses garbage at once draws more of it than one that holds it open.
   */
  garbageRate?: number;
  /** A garbage connection still open this long after its last byte counts as not refused and is cut by us. */
  garbageWaitMs: number;
  /** A valid key (a customer's, leaked): adds the stalls that only come after authentication. */
  key?: string;
}

export type HostileJob = AttackJob | { type: 'stop'; drainMs: number } | { type: 'status' };

/** The stalled kinds, each an exact place where a handshake can stop. */
export const STALL_KINDS = [
  'http-silent',
  'http-few-bytes',
  'http-partial-connect',
  'socks-silent',
  'socks-few-bytes',
  'socks-greeting-no-methods',
  'socks-partial-auth',
  // Refused (407) on a kept-alive connection, then silent: the keep-alive timeout must end it.
  'http-idle-after-refusal',
  // With a valid key (only when the job gives one): authenticated, then a partial SOCKS request.
  'socks-partial-request',
] as const;
export type StallKind = (typeof STALL_KINDS)[number];

export const GARBAGE_KINDS = [
  'http-random',
  'http-oversized-head',
  'socks-to-http-port',
  'socks-random',
  'http-to-socks-port',
  'socks-no-acceptable-method',
  // A forwarded request with a wrong key announcing a large body it never sends: refused without waiting for it.
  'http-unauthorized-body',
] as const;
export type GarbageKind = (typeof GARBAGE_KINDS)[number];

/** Milliseconds, summarised. */
export interface Spread {
  count: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
}

export interface AttackReport {
  /** Stalled connections opened in all (the pool plus every replacement). */
  stalledOpened: number;
  /** ...of which the gateway closed (end, reset or close from its side). */
  stalledClosedByServer: number;
  /** ...still open when the attack stopped and the drain time ran out: each one a handshake that never timed out. */
  stalledStillOpen: number;
  /** Stalled connections that failed to connect (the listener's backlog, a descriptor limit). */
  stalledConnectFailures: number;
  /** From the connection's connect to the gateway's close (the handshake timeout runs from accept), for those the gateway closed. */
  stalledLifetimeMs: Spread;
  stalledByKind: Record<string, { opened: number; closedByServer: number; answered: number }>;
  garbageSent: number;
  /** Garbage connections the gateway closed within garbageWaitMs of the last byte. */
  garbageClosedByServer: number;
  /** Garbage connections the gateway left open past garbageWaitMs (we cut them). */
  garbageLeftOpen: number;
  garbageConnectFailures: number;
  /** From the last byte sent to the gateway's close. */
  garbageCloseMs: Spread;
  garbageByKind: Record<string, { sent: number; closedByServer: number; answered: number }>;
  /** A few connect errors, for the log. */
  errors: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bytes that end a stalled kind's handshake somewhere in the middle; `afterReply`: sent after the gateway's first answer. */
function stallBytes(kind: StallKind, key: string): { first: Buffer | null; afterReply: Buffer | null } {
  switch (kind) {
    case 'http-idle-after-refusal':
      return { first: Buffer.from('GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nProxy-Authorization: Basic YWJjOmFiYw==\r\n\r\n'), afterReply: null };
    case 'socks-partial-request': {
      const k = Buffer.from(key);
      // Greeting and RFC 1929 auth at once; then an IPv4 CONNECT cut after its first address byte.
      return { first: Buffer.concat([Buffer.from([5, 1, 2, 1, k.length]), k, Buffer.from([k.length]), k]), afterReply: Buffer.from([5, 1, 0, 1, 127]) };
    }
    case 'http-silent':
    case 'socks-silent':
      return { first: null, afterReply: null };
    case 'http-few-bytes':
      return { first: Buffer.from('CO'), afterReply: null };
    case 'http-partial-connect':
      return { first: Buffer.from('CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nProxy-Authorization: Basic '), afterReply: null };
    case 'socks-few-bytes':
      return { first: Buffer.from([5]), afterReply: null };
    case 'socks-greeting-no-methods':
      // Two methods announced, none sent.
      return { first: Buffer.from([5, 2]), afterReply: null };
    case 'socks-partial-auth':
      // RFC 1929: version, a 20-byte user name of which 3 arrive.
      return { first: Buffer.from([5, 1, 2]), afterReply: Buffer.from([1, 20, 0x61, 0x62, 0x63]) };
  }
}

/** Garbage no proxy may accept, decided by its first bytes, so a refusal can be immediate. */
function garbageBytes(kind: GarbageKind): Buffer {
  switch (kind) {
    case 'http-random': {
      // A first byte below 0x09 is no HTTP method and not the CR/LF a parser skips.
      const b = randomBytes(64 + Math.floor(Math.random() * 1024));
      b[0] = Math.floor(Math.random() * 9);
      return b;
    }
    case 'http-oversized-head':
      // Far past any head limit (tailgate's default is 16 KiB), never finished.
      return Buffer.from(`CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Pad: ${'a'.repeat(64 * 1024)}\r\n`);
    case 'socks-to-http-port':
      return Buffer.from([5, 1, 2, 1, 3, 0x61, 0x62, 0x63, 3, 0x61, 0x62, 0x63]);
    case 'socks-random': {
      const b = randomBytes(64 + Math.floor(Math.random() * 1024));
      if (b[0] === 5) b[0] = 4;
      return b;
    }
    case 'http-unauthorized-body':
      return Buffer.from('POST http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nProxy-Authorization: Basic YWJjOmFiYw==\r\nContent-Length: 1000000\r\n\r\nab');
    case 'http-to-socks-port':
      return Buffer.from('CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nProxy-Authorization: Basic YWJjOmFiYw==\r\n\r\n');
    case 'socks-no-acceptable-method':
      // 255 methods, none of them username/password (0x02).
      return Buffer.from([5, 255, ...Array.from({ length: 255 }, (_, i) => (i === 2 ? 1 : i))]);
  }
}

const portFor = (job: AttackJob, kind: string): Endpoint =>
  kind.startsWith('http') ? (kind === 'http-to-socks-port' ? job.socks : job.http) : kind === 'socks-to-http-port' ? job.http : job.socks;

function spread(xs: number[]): Spread {
  if (xs.length === 0) return { count: 0, min: 0, p50: 0, p99: 0, max: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  const r = (v: number) => Math.round(v);
  return { count: s.length, min: r(s[0]!), p50: r(at(0.5)), p99: r(at(0.99)), max: r(s[s.length - 1]!) };
}

class Attack {
  running = true;
  readonly open = new Set<net.Socket>();
  readonly garbageOpen = new Set<net.Socket>();
  stalledOpened = 0;
  stalledClosedByServer = 0;
  stalledConnectFailures = 0;
  readonly lifetimes: number[] = [];
  readonly stalledByKind: AttackReport['stalledByKind'] = Object.fromEntries(STALL_KINDS.map((k) => [k, { opened: 0, closedByServer: 0, answered: 0 }]));
  garbageSent = 0;
  garbageClosedByServer = 0;
  garbageLeftOpen = 0;
  garbageConnectFailures = 0;
  readonly garbageMs: number[] = [];
  readonly garbageByKind: AttackReport['garbageByKind'] = Object.fromEntries(GARBAGE_KINDS.map((k) => [k, { sent: 0, closedByServer: 0, answered: 0 }]));
  readonly errors: string[] = [];
  private next = 0;
  private garbageLoops: Promise<void>[] = [];
  /** Connects in flight: bounded, so the listener's accept backlog is never the thing measured. */
  private connecting = 0;
  private wake: (() => void) | null = null;

  private readonly kinds: readonly StallKind[];

  constructor(readonly job: AttackJob) {
    this.kinds = STALL_KINDS.filter((k) => k !== 'socks-partial-request' || job.key !== undefined);
  }

  noteError(err: unknown): void {
    if (this.errors.length < 5) this.errors.push(err instanceof Error ? err.message : String(err));
  }

  /** Opens stalled connections until the pool is full; resolves once it first is. */
  async fill(): Promise<void> {
    while (this.running) {
      while (this.running && this.open.size + this.connecting < this.job.stalled && this.connecting < 128) this.openStalled();
      if (!this.running) return;
      if (this.open.size >= this.job.stalled) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Keeps the pool full until stopped. */
  async keepFull(): Promise<void> {
    while (this.running) {
      await this.fill();
      if (!this.running) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private openStalled(): void {
    const kind = this.kinds[this.next++ % this.kinds.length]!;
    const { first, afterReply } = stallBytes(kind, this.job.key ?? '');
    const to = portFor(this.job, kind);
    const stats = this.stalledByKind[kind]!;
    this.connecting++;
    const s = net.connect({ host: to.host, port: to.port, localAddress: this.job.localAddress });
    let connected = false;
    let connectedAt = 0;
    let answered = false;
    s.setNoDelay(true);
    s.on('connect', () => {
      connected = true;
      this.connecting--;
      this.open.add(s);
      this.stalledOpened++;
      stats.opened++;
      connectedAt = performance.now();
      if (first) s.write(first);
      this.poke();
    });
    s.on('data', () => {
      if (answered) return;
      answered = true;
      stats.answered++;
      if (afterReply) s.write(afterReply);
    });
    s.on('error', (err) => {
      if (!connected) {
        this.stalledConnectFailures++;
        this.noteError(err);
      }
    });
    s.on('close', () => {
      if (!connected) {
        this.connecting--;
        this.poke();
        return;
      }
      if (!this.open.delete(s)) return; // cut by us at the end
      this.stalledClosedByServer++;
      stats.closedByServer++;
      this.lifetimes.push(performance.now() - connectedAt);
      this.poke();
    });
    s.on('end', () => s.end());
  }

  startGarbage(): void {
    for (let i = 0; i < this.job.garbageWorkers; i++) this.garbageLoops.push(this.garbageWorker(i));
  }

  /** When the next paced garbage connection may start (performance.now()). */
  private nextGarbageAt = 0;

  private async garbageWorker(i: number): Promise<void> {
    let n = i;
    const rate = this.job.garbageRate;
    while (this.running) {
      if (rate !== undefined) {
        const now = performance.now();
        const at = Math.max(now, this.nextGarbageAt);
        this.nextGarbageAt = at + 1000 / rate;
        if (at > now) await sleep(at - now);
        if (!this.running) return;
      }
      const kind = GARBAGE_KINDS[n++ % GARBAGE_KINDS.length]!;
      await this.oneGarbage(kind);
    }
  }

  private oneGarbage(kind: GarbageKind): Promise<void> {
    const to = portFor(this.job, kind);
    const stats = this.garbageByKind[kind]!;
    return new Promise((resolve) => {
      const s = net.connect({ host: to.host, port: to.port, localAddress: this.job.localAddress });
      let connected = false;
      let sentAt = 0;
      let timer: NodeJS.Timeout | undefined;
      s.on('connect', () => {
        connected = true;
        this.garbageOpen.add(s);
        this.garbageSent++;
        stats.sent++;
        s.write(garbageBytes(kind), () => (sentAt = performance.now()));
        sentAt = performance.now();
        timer = setTimeout(() => {
          this.garbageLeftOpen++;
          this.garbageOpen.delete(s);
          s.destroy();
        }, this.job.garbageWaitMs);
      });
      s.on('data', () => {
        stats.answered++;
        s.removeAllListeners('data');
        s.resume();
      });
      s.on('end', () => s.end());
      s.on('error', (err) => {
        if (!connected) {
          this.garbageConnectFailures++;
          this.noteError(err);
        }
      });
      s.on('close', () => {
        clearTimeout(timer);
        if (connected && this.garbageOpen.delete(s)) {
          this.garbageClosedByServer++;
          stats.closedByServer++;
          this.garbageMs.push(performance.now() - sentAt);
        }
        resolve();
      });
    });
  }

  /** Stops replacing and sending; waits up to drainMs for the gateway to close what is left, then cuts the rest. */
  async stop(drainMs: number): Promise<AttackReport> {
    this.running = false;
    this.poke();
    await Promise.all(this.garbageLoops);
    const deadline = performance.now() + drainMs;
    while (this.open.size > 0 && performance.now() < deadline) await sleep(50);
    const stillOpen = this.open.size;
    for (const s of this.open) s.destroy();
    this.open.clear();
    return this.report(stillOpen);
  }

  report(stillOpen = this.open.size): AttackReport {
    return {
      stalledOpened: this.stalledOpened,
      stalledClosedByServer: this.stalledClosedByServer,
      stalledStillOpen: stillOpen,
      stalledConnectFailures: this.stalledConnectFailures,
      stalledLifetimeMs: spread(this.lifetimes),
      stalledByKind: this.stalledByKind,
      garbageSent: this.garbageSent,
      garbageClosedByServer: this.garbageClosedByServer,
      garbageLeftOpen: this.garbageLeftOpen,
      garbageConnectFailures: this.garbageConnectFailures,
      garbageCloseMs: spread(this.garbageMs),
      garbageByKind: this.garbageByKind,
      errors: this.errors,
    };
  }
}

let attack: Attack | undefined;

async function run(job: HostileJob): Promise<unknown> {
  switch (job.type) {
    case 'start': {
      if (attack?.running) throw new Error('an attack is already running');
      attack = new Attack(job);
      // Garbage starts with the pool, so the stalled connections are opened under the flood too.
      attack.startGarbage();
      await attack.fill();
      void attack.keepFull();
      return { open: attack.open.size };
    }
    case 'status':
      return { open: attack?.open.size ?? 0, report: attack?.report() };
    case 'stop': {
      if (!attack) throw new Error('no attack to stop');
      const a = attack;
      attack = undefined;
      return a.stop(job.drainMs);
    }
  }
}

// Only as a child with an IPC channel: the test imports this file for its kinds and types.
if (process.send !== undefined) {
  process.on('message', (msg: { id: number; job: HostileJob }) => {
    run(msg.job).then(
      (result) => process.send!({ id: msg.id, result }),
      (err: unknown) => process.send!({ id: msg.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true });
}
