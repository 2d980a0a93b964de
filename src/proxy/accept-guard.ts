// Keeps the proxy listeners inside the process's descriptor limit, and makes running out visible.
//
// What Node 20 does when accept() fails with EMFILE (checked by test/faults/fd-exhaustion.test.ts): libuv keeps one
// spare descriptor; on EMFILE it closes the spare, accepts and closes every pending connection, and takes the spare
// back, so clients see their connection closed without an answer and Node is told nothing. Only when the spare is
// gone too does Node emit 'error' (syscall 'accept') on the server, which keeps listening. So the guard works
// mostly ahead of the limit: each listener gets a `maxConnections` share of the descriptors, over which Node closes
// the new connection and emits 'drop', and the rare accept error is handled as nginx does, by pausing briefly.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import type { Counter } from 'prom-client';
import type { Logger } from '../log.js';
import type { ListenerName } from '../tunnel/metrics.js';

/** Descriptors kept for everything that is not a tunnel: the database pool, the API, tailscaled, logs, Node itself. */
export function descriptorReserve(limit: number): number {
  return 64 + Math.floor(limit / 64);
}

/**
 * The default cap of client connections per proxy listener under a descriptor limit: each tunnel takes two descriptors
 * (client and device), so one listener full of tunnels still leaves the reserve. Both listeners full at once can
 * still reach the limit; then accept and dial failures are handled as the README describes.
 */
export function connectionsPerListener(limit: number): number {
  return Math.max(1, Math.floor((limit - descriptorReserve(limit)) / 2));
}

/** The soft RLIMIT_NOFILE of this process, from /proc (Linux); undefined where it cannot be read or is unlimited. */
export function readDescriptorLimit(limitsFile = '/proc/self/limits'): number | undefined {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (m === null || m[1] === 'unlimited') return undefined;
  return Number(m[1]);
}

/** Accept failures that mean the process (or the system) is out of descriptors or memory for sockets. */
const RESOURCE_CODES = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM']);

/** An error a listening server emits for one failed accept (the server is still listening). */
export function isAcceptError(err: NodeJS.ErrnoException): boolean {
  return err.syscall === 'accept';
}

export interface AcceptGuardOptions {
  listener: ListenerName;
  /** The listener's connection cap; undefined leaves the server unbounded. */
  maxConnections: number | undefined;
  /** tailgate_accept_errors_total. */
  errors: Counter<'listener' | 'code'>;
  log: Logger;
  /** How long accepting stays paused after an accept error. */
  pauseMs?: number | undefined;
  /** A burst ends when nothing was refused for this long; then one summary line is logged. */
  quietMs?: number | undefined;
}

const DEFAULT_PAUSE_MS = 250;
const DEFAULT_QUIET_MS = 1_000;

/**
 * One listener's guard. A burst of refusals is logged twice: once when it starts and once, with its count, when it
 * is over; the counter has every refusal by code (`fd_budget` for connections over the cap, else the errno).
 */
export class AcceptGuard {
  private readonly pauseMs: number;
  private readonly quietMs: number;
  private burst = 0;
  private burstStarted = 0;
  private quietTimer: NodeJS.Timeout | undefined;
  private pauseTimer: NodeJS.Timeout | undefined;
  private readonly dropped;

  constructor(
    private readonly server: Server,
    private readonly opts: AcceptGuardOptions,
  ) {
    this.pauseMs = opts.pauseMs ?? DEFAULT_PAUSE_MS;
    this.quietMs = opts.quietMs ?? DEFAULT_QUIET_MS;
    this.dropped = opts.errors.labels(opts.listener, 'fd_budget');
    if (opts.maxConnections !== undefined) server.maxConnections = opts.maxConnections;
    server.on('drop', () => {
      // While paused the cap is the pause's, so those closed then are counted apart from the budget's.
      if (this.pauseTimer === undefined) {
        this.dropped.inc();
        this.refused('fd_budget');
      } else {
        this.opts.errors.inc({ listener: opts.listener, code: 'paused' });
        this.refused('paused');
      }
    });
    server.on('error', (err: NodeJS.ErrnoException) => {
      if (!isAcceptError(err)) return;
      this.opts.errors.inc({ listener: opts.listener, code: err.code ?? 'unknown' });
      this.refused(err.code ?? 'unknown');
      if (RESOURCE_CODES.has(err.code ?? '')) this.pause();
    });
    server.on('close', () => this.stop());
  }

  /** Whether accepting is paused now (after an accept error). */
  get paused(): boolean {
    return this.pauseTimer !== undefined;
  }

  private refused(code: string): void {
    if (this.burst === 0) {
      this.burstStarted = Date.now();
      this.opts.log.warn(
        { listener: this.opts.listener, code, maxConnections: this.opts.maxConnections },
        code === 'fd_budget'
          ? 'refusing new connections: the listener holds its share of the file descriptors'
          : 'accepting connections failed: out of file descriptors or socket memory',
      );
      this.quietTimer = setTimeout(() => this.burstOver(), this.quietMs);
      this.quietTimer.unref();
    } else {
      this.quietTimer?.refresh();
    }
    this.burst++;
  }

  private burstOver(): void {
    this.opts.log.info({ listener: this.opts.listener, refused: this.burst, ms: Date.now() - this.burstStarted }, 'connections accepted again after a burst of refusals');
    this.burst = 0;
    this.quietTimer = undefined;
  }

  /**
   * Node has no call to stop polling a listening socket, so a pause is the cap lowered to the connections already
   * open: new connections are closed at once, freeing their descriptor, instead of each failing its accept again.
   */
  private pause(): void {
    if (this.pauseTimer !== undefined) {
      this.pauseTimer.refresh();
      return;
    }
    // Node 20 reads a cap of 0 as no cap, so the pause starts at 1 and becomes the open count once it is known.
    this.server.maxConnections = 1;
    this.server.getConnections((err, n) => {
      if (err === null && this.pauseTimer !== undefined) this.server.maxConnections = Math.max(1, n);
    });
    this.pauseTimer = setTimeout(() => this.resume(), this.pauseMs);
    this.pauseTimer.unref();
  }

  private resume(): void {
    this.pauseTimer = undefined;
    this.server.maxConnections = this.opts.maxConnections ?? Number.MAX_SAFE_INTEGER;
  }

  private stop(): void {
    clearTimeout(this.quietTimer);
    clearTimeout(this.pauseTimer);
  }
}
