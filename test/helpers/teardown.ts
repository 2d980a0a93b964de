// The end of a test file: what it started, closed in turn, each part within a time limit. A part that hangs (a gateway
// that does not finish draining, a server holding a connection) is reported and the parts after it are still closed,
// instead of the hook waiting for the file's timeout with everything left open.

/** How long one part may take to close; above the gateway's default shutdown grace period (TAILGATE_SHUTDOWN_GRACE_MS). */
export const CLOSE_TIMEOUT_MS = 30_000;

export interface Part {
  what: string;
  close(): Promise<unknown> | unknown;
}

/** Closes every part in the order given; fails after the last one with what failed or took too long. */
export async function closeInTurn(parts: readonly Part[], timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
  const failures: Error[] = [];
  for (const { what, close } of parts) {
    const late = new Error(`closing ${what} took more than ${timeoutMs} ms`);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(late), timeoutMs);
    });
    try {
      await Promise.race([Promise.resolve().then(close), deadline]);
    } catch (err) {
      failures.push(err === late ? late : new Error(`closing ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
    } finally {
      clearTimeout(timer);
    }
  }
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw new AggregateError(failures, failures.map((f) => f.message).join('; '));
}

/** What a file started, to be closed the last started first. */
export class Teardown {
  private parts: Part[] = [];

  /** Remembers `close` for run() and returns `part`, so that starting and owning a part is one expression. */
  own<T>(what: string, part: T, close: (part: T) => Promise<unknown> | unknown): T {
    this.parts.push({ what, close: () => close(part) });
    return part;
  }

  /** Closes every part owned so far, the last owned first; a second run closes only what was owned since. */
  run(timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
    const parts = this.parts.reverse();
    this.parts = [];
    return closeInTurn(parts, timeoutMs);
  }
}
