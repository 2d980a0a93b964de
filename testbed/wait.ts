// Polling for a condition with a deadline, for tests and benchmarks alike (bench/ may import testbed/, never test/).
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Calls `probe` every `everyMs` until it returns something other than undefined or false, and resolves with that. A
 * probe that throws has not succeeded yet (what it asks may still be starting); its last error goes into the timeout's.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(everyMs);
  }
  const why = last === undefined ? '' : ` (last error: ${(last as Error).message})`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`, { cause: last });
}
