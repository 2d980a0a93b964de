// Warming up the path to devices: a just-approved device, and after every (re)start of tailscaled the registered ones.
import type { Logger } from '../log.js';
import { sleep, type Clock } from './clock.js';
import { findPeer, type LocalStatus } from './localapi.js';
import type { TailscaledApi } from './tailscaled-api.js';

/** Registered devices warmed up at once after a (re)start. */
const WARM_UP_CONCURRENCY = 8;

export interface WarmUpDeps {
  clock: Clock;
  api: TailscaledApi;
  /** Reads the status; what it reads becomes the supervisor's view, so a connection right after sees the device online. */
  read(timeoutMs: number, signal: AbortSignal): Promise<LocalStatus>;
  log: Logger;
}

/**
 * Gets a device ready for its first connection: waits until it is in our netmap, then pings it through WireGuard
 * (TSMP), which completes the handshake. Without this the first TCP connection to a new device waits about 5 s, or
 * fails at once while the device is not in the netmap yet. Best effort: false if the device did not show up or answer
 * within the time, or once `signal` aborts.
 */
export async function warmUp(deps: WarmUpDeps, ip: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const { clock } = deps;
  const deadline = clock.now() + timeoutMs;
  let last = 'not in the netmap, or no DERP home or endpoints yet';
  while (clock.now() < deadline) {
    try {
      const peer = findPeer(await deps.read(2_000, signal), ip);
      // A handshake sent before the peer has reported any way to reach it (DERP home or endpoints) is dropped
      // ("no UDP or DERP addr") and WireGuard only retries 5 s later, so wait for one first.
      if (peer?.Online === true && (peer.Relay || peer.Addrs?.length)) {
        const wait = Math.max(200, Math.min(3_000, deadline - clock.now()));
        const err = await deps.api.ping(ip, wait, signal);
        if (err === null) return true;
        last = err;
      }
    } catch (err) {
      if (signal.aborted) return false;
      last = (err as Error).message;
    }
    try {
      await sleep(clock, 100, signal);
    } catch {
      return false;
    }
  }
  deps.log.warn({ ip, last }, 'could not warm up the path to a new device; its first connection may be slow');
  return false;
}

/** Warms up `ips` with `one`, WARM_UP_CONCURRENCY at a time; resolves with how many answered. */
export async function warmUpAll(ips: string[], one: (ip: string) => Promise<boolean>, signal: AbortSignal): Promise<number> {
  let warmed = 0;
  let next = 0;
  const worker = async () => {
    while (next < ips.length && !signal.aborted) {
      const ip = ips[next++]!;
      if (await one(ip)) warmed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(WARM_UP_CONCURRENCY, ips.length) }, worker));
  return warmed;
}
