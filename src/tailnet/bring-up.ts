// One tailscaled from spawn to Running: its LocalAPI answers, its backend state settles, `tailscale up` if it needs
// a login, then Running; all within one deadline, and abandoned as soon as the run's signal aborts.
import { sleep, type Clock } from './clock.js';
import type { JoinTailnet } from './join.js';
import type { LocalStatus } from './localapi.js';
import type { TailscaledApi } from './tailscaled-api.js';

/** Backend states in which tailscaled waits for `tailscale up`. */
const NEEDS_JOIN = new Set(['NeedsLogin', 'Stopped', 'NoState']);

export interface BringUpSteps {
  clock: Clock;
  api: TailscaledApi;
  join: JoinTailnet;
  /** A status read that becomes the supervisor's view (the wait for Running is what readiness follows). */
  read(timeoutMs: number): Promise<LocalStatus>;
  /** Called before `tailscale up`. */
  joining(): void;
  socket: string;
  upTimeoutMs: number;
}

/** Resolves with the first status that says Running; rejects with the signal's reason once it aborts. */
export async function bringUp(steps: BringUpSteps, signal: AbortSignal): Promise<LocalStatus> {
  const deadline = steps.clock.now() + steps.upTimeoutMs;
  let status = await waitForLocalApi(steps, deadline, signal);
  if (status.BackendState !== 'Running') status = await waitWhileStarting(steps, deadline, status, signal);
  if (NEEDS_JOIN.has(status.BackendState)) {
    steps.joining();
    await steps.join(deadline - steps.clock.now(), signal);
    signal.throwIfAborted();
  }
  return waitUntilRunning(steps, deadline, signal);
}

async function waitForLocalApi({ clock, api, socket }: BringUpSteps, deadline: number, signal: AbortSignal): Promise<LocalStatus> {
  let lastErr = '';
  while (clock.now() < deadline) {
    signal.throwIfAborted();
    try {
      return await api.status(2_000, signal);
    } catch (err) {
      signal.throwIfAborted();
      lastErr = (err as Error).message;
    }
    await sleep(clock, 100, signal);
  }
  throw new Error(`tailscaled's LocalAPI did not answer on ${socket} in time (${lastErr})`);
}

async function waitWhileStarting({ clock, api }: BringUpSteps, deadline: number, status: LocalStatus, signal: AbortSignal): Promise<LocalStatus> {
  // NoState right after start means "still reading its state file"; give it a moment to settle.
  const settleBy = Math.min(deadline, clock.now() + 5_000);
  while ((status.BackendState === 'NoState' || status.BackendState === 'Starting') && clock.now() < settleBy) {
    await sleep(clock, 200, signal);
    status = await api.status(2_000, signal);
  }
  return status;
}

async function waitUntilRunning({ clock, read, upTimeoutMs }: BringUpSteps, deadline: number, signal: AbortSignal): Promise<LocalStatus> {
  let state = '';
  while (clock.now() < deadline) {
    signal.throwIfAborted();
    try {
      const status = await read(2_000);
      state = status.BackendState;
      if (status.BackendState === 'Running') return status;
    } catch (err) {
      signal.throwIfAborted();
      state = (err as Error).message;
    }
    await sleep(clock, 200, signal);
  }
  throw new Error(`tailscaled did not reach Running within ${upTimeoutMs} ms (last state: ${state || 'unknown'})`);
}
