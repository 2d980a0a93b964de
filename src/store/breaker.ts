// Whether the database can be reached, learnt from the calls that fail to reach it. While it cannot, every store call
// fails at once instead of queueing behind a client that is reconnecting (the `postgres` client holds queries while
// its connections wait out their reconnect back-off, up to seconds): callers that can answer from memory (the key
// cache, usage held for later) do so at once, and the others answer 503 at once. One probe at a time finds out when
// it is back.
import type { Logger } from '../log.js';

/** A store call refused because the database cannot be reached now (or did not answer in time). */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  readonly code = 'DATABASE_UNAVAILABLE';
  constructor(
    /** Short, without addresses: the client's error code, a SQLSTATE, or "timeout". */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`database unavailable (${reason})`, options);
  }
}

/** Error codes of `postgres` and of the socket layer that mean the server cannot be reached right now. */
const UNREACHABLE_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'ETIMEDOUT',
  'EPIPE',
  'ENOENT',
  // admin_shutdown, crash_shutdown, cannot_connect_now (starting up or shutting down), too_many_connections
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);

/** True for an error that says the server is unreachable or going away, not that it refused a statement. */
export function isUnreachable(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  // Class 08: connection exceptions.
  return UNREACHABLE_CODES.has(code) || code.startsWith('08');
}

function reasonOf(err: unknown): string {
  if (err instanceof StoreUnavailableError) return err.reason;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'unreachable';
}

export interface BreakerOptions {
  /** A trivial query through the same client (SELECT 1). */
  probe: () => Promise<void>;
  /** A call not answered this long is refused, and a probe decides whether the database is down. */
  timeoutMs: number;
  /** How often the probe runs while the database is down. */
  probeEveryMs: number;
  log: Logger;
}

export class DatabaseBreaker {
  /** When the database was found unreachable; undefined while it is reachable. */
  private downSince: number | undefined;
  private reason = '';
  private probing = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly recovered: (() => void)[] = [];

  constructor(private readonly opts: BreakerOptions) {}

  /** False from the first call that could not reach the database until a probe reaches it again. */
  get available(): boolean {
    return this.downSince === undefined;
  }

  /** `fn` runs each time the database is reachable again after an outage. */
  onRecovered(fn: () => void): void {
    this.recovered.push(fn);
  }

  /**
   * Runs one store call. Refused at once while the database is down. `timeoutMs` 0: no timeout, for a write whose
   * late success must not be taken for a failure (usage deltas would be counted twice).
   */
  async run<T>(call: () => Promise<T>, timeoutMs = this.opts.timeoutMs): Promise<T> {
    if (this.downSince !== undefined) throw new StoreUnavailableError(this.reason);
    let timer: NodeJS.Timeout | undefined;
    try {
      if (timeoutMs <= 0) return await call();
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new StoreUnavailableError('timeout')), timeoutMs);
      });
      return await Promise.race([call(), late]);
    } catch (err) {
      if (err instanceof StoreUnavailableError && err.reason === 'timeout') {
        // Slow is not down (a big report, a lock): a probe decides.
        this.probeNow();
        throw err;
      }
      if (isUnreachable(err)) {
        this.trip(err);
        throw new StoreUnavailableError(reasonOf(err), { cause: err });
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private trip(err: unknown): void {
    if (this.downSince !== undefined || this.closed) return;
    this.downSince = performance.now();
    this.reason = reasonOf(err);
    this.opts.log.warn({ reason: this.reason, err: (err as Error).message }, 'database unreachable: answering from memory where possible, refusing the rest at once');
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.probeNow(), this.opts.probeEveryMs);
    this.timer.unref();
  }

  /** One probe, unless one is running: success closes the breaker, failure opens it (or keeps it open). */
  probeNow(): void {
    if (this.probing || this.closed) return;
    this.probing = true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${this.opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })), this.opts.timeoutMs);
    });
    Promise.race([this.opts.probe(), late])
      .then(
        () => {
          if (this.downSince === undefined) return;
          const ms = Math.round(performance.now() - this.downSince);
          this.downSince = undefined;
          this.opts.log.info({ downMs: ms }, 'database reachable again');
          for (const fn of this.recovered) fn();
        },
        (err: unknown) => {
          if (this.downSince === undefined) this.trip(err);
          else this.schedule();
        },
      )
      .finally(() => {
        clearTimeout(timer);
        this.probing = false;
      });
  }
}
