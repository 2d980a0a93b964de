// The tailnet path as main.ts sees it: a supervised tailscaled, the dialer that goes through it, and a view of its state.
import type { TailnetConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Dialer } from './dialer.js';
import { GatedDirectDialer } from './gated-dialer.js';
import { LocalApiDialer } from './localapi-dialer.js';
import { TailscaledSocksDialer } from './socks-dialer.js';
import { TailscaledSupervisor, type SupervisorOptions } from './supervisor.js';
import type { TailnetView } from './types.js';

export interface Tailnet {
  dialer: Dialer;
  view: TailnetView;
  supervisor: TailscaledSupervisor;
  stop(): Promise<void>;
}

export function dialerFor(cfg: TailnetConfig, supervisor: TailscaledSupervisor): Dialer {
  // Kernel mode has a TUN device: the kernel's stack reaches 100.x directly and keeps TCP half-close intact.
  if (!cfg.userspace) return new GatedDirectDialer(supervisor);
  return cfg.dialMode === 'socks5' ? new TailscaledSocksDialer(supervisor.socksPort, supervisor) : new LocalApiDialer(cfg.socket, supervisor);
}

/** Starts tailscaled and resolves once it is Running (rejects after TS_UP_TIMEOUT_MS, with tailscaled stopped). */
export async function startTailnet(cfg: TailnetConfig, log: Logger, opts?: SupervisorOptions): Promise<Tailnet> {
  const supervisor = new TailscaledSupervisor(cfg, log, opts);
  await supervisor.start();
  const dialer = dialerFor(cfg, supervisor);
  log.info({ mode: cfg.userspace ? `userspace, ${cfg.dialMode} dialing` : 'kernel (TUN)', selfIps: supervisor.state().selfIps }, 'tailnet ready');
  return { dialer, view: supervisor, supervisor, stop: () => supervisor.stop() };
}
