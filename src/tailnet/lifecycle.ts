// The supervisor's state: which phase it is in, for which run of tailscaled, and what that run last reported. Every
// change goes through next(), a pure function of the state and one event; TailnetState and the reason dials are
// refused are derived from the state, never stored beside it.
import type { TailscaledProcess } from './tailscaled-process.js';
import type { TailnetState } from './types.js';

/**
 * One tailscaled process from spawn to exit. Everything the run starts (LocalAPI waits, `tailscale up`, polls,
 * warm-ups, the ready timer) takes its signal, and stops when the run ends.
 */
export class Run {
  private readonly controller = new AbortController();
  /** Cancels the TS_READY_TIMEOUT_MS timer, once Running has started it. */
  cancelReadyTimer: (() => void) | undefined;

  constructor(
    /** 1 for the first run, counting up with every restart; for logs. */
    readonly id: number,
    readonly process: TailscaledProcess,
    /** The backoff waited before this run was started; 0 for the first. */
    readonly afterDelayMs: number,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get ended(): boolean {
    return this.controller.signal.aborted;
  }

  /** `reason` is what the run's pending waits reject with. */
  end(reason: Error): void {
    if (this.ended) return;
    this.cancelReadyTimer?.();
    this.controller.abort(reason);
  }
}

/** What tailscaled last said about itself in this run; `reason` is null exactly when it is Running. */
export interface Link {
  /** tailscaled's BackendState, or "starting" (no status read yet) or "unresponsive" (its LocalAPI did not answer). */
  backendState: string;
  reason: string | null;
}

const NOT_READ_YET: Link = { backendState: 'starting', reason: 'tailscaled is starting' };
const UNRESPONSIVE: Link = { backendState: 'unresponsive', reason: 'tailscaled is not answering' };
const RUNNING: Link = { backendState: 'Running', reason: null };

function linkOf(backendState: string): Link {
  return backendState === 'Running' ? RUNNING : { backendState, reason: `tailnet is not up (tailscaled state ${backendState})` };
}

export type SupervisorState =
  /** Created, start() not called yet. */
  | { phase: 'idle' }
  /** tailscaled spawned: waiting for its LocalAPI, for its state to settle, and (already logged in) for Running. */
  | { phase: 'starting'; run: Run; link: Link }
  /** `tailscale up` with the auth key, then waiting for Running. */
  | { phase: 'joining'; run: Run; link: Link }
  /** Running, possibly on the netmap from its disk cache only: waiting for control's (Self.Online). */
  | { phase: 'waitingForControl'; run: Run; link: Link }
  /** Control's netmap is in: warming up the registered devices control reports online (`devices`, once listed). */
  | { phase: 'warmingUp'; run: Run; link: Link; devices: number | undefined }
  /** Usable. `control` is false when TS_READY_TIMEOUT_MS passed first and control's netmap has not come since. */
  | { phase: 'ready'; run: Run; link: Link; control: boolean }
  /** `last` exited or failed to come up; the next run starts after `delayMs`. */
  | { phase: 'restarting'; last: Run; reason: string; delayMs: number }
  | { phase: 'stopped'; last: Run | undefined };

export type Phase = SupervisorState['phase'];

export type SupervisorEvent =
  | { type: 'spawned'; run: Run }
  | { type: 'joining'; run: Run }
  /** Bring-up read Running; `control` when that read already had control's netmap. */
  | { type: 'running'; run: Run; control: boolean }
  /** A status read of this run was taken into the view. */
  | { type: 'status'; run: Run; backendState: string; control: boolean }
  | { type: 'unresponsive'; run: Run }
  | { type: 'devicesListed'; run: Run; online: number }
  | { type: 'warmedUp'; run: Run }
  | { type: 'readyTimeout'; run: Run }
  /** The run is over: tailscaled exited, or was killed after failing to come up. */
  | { type: 'exited'; run: Run; reason: string }
  | { type: 'stop' };

export interface Backoff {
  minMs: number;
  maxMs: number;
}

type RunState = Extract<SupervisorState, { run: Run }>;

/** The run the supervisor is driving now; undefined while restarting, stopped or not started. */
export function activeRun(s: SupervisorState): Run | undefined {
  return 'run' in s ? s.run : undefined;
}

/** The run now or, between runs, the one before. */
export function latestRun(s: SupervisorState): Run | undefined {
  return 'run' in s ? s.run : 'last' in s ? s.last : undefined;
}

/**
 * The state after `event`, or undefined when the event means nothing in this state (an event of a run that is over,
 * a warm-up finishing after the ready timeout, …). This is the whole transition table.
 */
export function next(s: SupervisorState, event: SupervisorEvent, backoff: Backoff): SupervisorState | undefined {
  if (event.type === 'stop') return s.phase === 'stopped' ? undefined : { phase: 'stopped', last: latestRun(s) };
  if (event.type === 'spawned') {
    return s.phase === 'idle' || s.phase === 'restarting' ? { phase: 'starting', run: event.run, link: NOT_READ_YET } : undefined;
  }
  // Every other event comes from one run, and a run that is no longer the current one has nothing more to say.
  if (!('run' in s) || s.run !== event.run) return undefined;
  const { run, link } = s;
  switch (event.type) {
    case 'joining':
      return s.phase === 'starting' ? { phase: 'joining', run, link } : undefined;
    case 'running':
      if (s.phase !== 'starting' && s.phase !== 'joining') return undefined;
      return event.control ? { phase: 'warmingUp', run, link: RUNNING, devices: undefined } : { phase: 'waitingForControl', run, link: RUNNING };
    case 'status': {
      const seen = linkOf(event.backendState);
      const control = event.control && seen.reason === null;
      if (s.phase === 'waitingForControl' && control) return { phase: 'warmingUp', run, link: seen, devices: undefined };
      if (s.phase === 'ready' && control && !s.control) return { ...s, link: seen, control: true };
      return { ...s, link: seen };
    }
    case 'unresponsive':
      return { ...s, link: UNRESPONSIVE };
    case 'devicesListed':
      return s.phase === 'warmingUp' ? { ...s, devices: event.online } : undefined;
    case 'warmedUp':
      return s.phase === 'warmingUp' ? { phase: 'ready', run, link, control: true } : undefined;
    case 'readyTimeout':
      return s.phase === 'waitingForControl' || s.phase === 'warmingUp' ? { phase: 'ready', run, link, control: false } : undefined;
    case 'exited':
      return { phase: 'restarting', last: run, reason: event.reason, delayMs: restartDelay(s, backoff) };
  }
}

/** Back to the shortest delay once a run reached Running; otherwise twice the last one, capped. */
function restartDelay(s: RunState, backoff: Backoff): number {
  if (s.phase !== 'starting' && s.phase !== 'joining') return backoff.minMs;
  return Math.min(backoff.maxMs, Math.max(backoff.minMs, s.run.afterDelayMs * 2));
}

/** null when tailscaled can carry a dial now, else why not. */
export function unavailableReason(s: SupervisorState): string | null {
  switch (s.phase) {
    case 'idle':
      return NOT_READ_YET.reason;
    case 'restarting':
      return s.reason;
    case 'stopped':
      return 'tailscaled is stopped';
    default:
      return s.link.reason;
  }
}

export function tailnetState(s: SupervisorState, selfIps: string[]): TailnetState {
  if (!('run' in s)) return { running: false, backendState: s.phase === 'idle' ? 'starting' : s.phase, selfIps, ready: false };
  const running = s.link.reason === null;
  const ready = running && s.phase === 'ready';
  return { running, backendState: s.link.backendState, selfIps, ready, ...(running && !ready ? { waitingFor: waitingFor(s) } : {}) };
}

/** What readiness waits for while the run is not ready; undefined once it is, or between runs. */
export function waitingFor(s: SupervisorState): string | undefined {
  if (s.phase === 'warmingUp') return s.devices === undefined ? 'the list of registered devices' : `the warm-up of ${s.devices} registered device(s)`;
  return 'run' in s && s.phase !== 'ready' ? 'a netmap from control' : undefined;
}

/** Control's netmap has come in this run (the status poll can slow down). */
export function hasControl(s: SupervisorState): boolean {
  return s.phase === 'warmingUp' || (s.phase === 'ready' && s.control);
}

/** Running on what may be the cached netmap only: a dial now should wait for control's. */
export function awaitsControl(s: SupervisorState): boolean {
  return (s.phase === 'starting' || s.phase === 'joining' || s.phase === 'waitingForControl') && s.link.reason === null;
}
