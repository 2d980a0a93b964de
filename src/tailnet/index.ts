// The tailnet path as main.ts sees it: a supervised tailscaled, the dialer that goes through it, and a view of its state.
import type { TailnetConfig } from './types.js';
import type { Logger } from '../log.js';
import type { Dialer } from '../core/dialer.js';
import { DirectDialer } from './direct-dialer.js';
import { LocalApiDialer } from './localapi-dialer.js';
import { TailscaledSocksDialer } from './socks-dialer.js';
import { TailscaledSupervisor, type SupervisorOptions } from './supervisor.js';
import type { TailnetView } from './types.js';

export interface Tailnet {
  dialer: Dialer;
  view: TailnetView;
  supervisor: TailscaledSupervisor;
  /** Starts tailscaled and resolves once it is Running (rejects after TS_UP_TIMEOUT_MS, with tailscaled stopped). */
  start(): Promise<void>;
  /** Safe at any time, also while start() is still waiting: tailscaled is terminated and start() rejects. */
  stop(): Promise<void>;
}

export function dialerFor(cfg: TailnetConfig, supervisor: TailscaledSupervisor): Dialer {
  // Kernel mode has a TUN device: the kernel's stack reaches 100.x directly and keeps TCP half-close intact.
  if (!cfg.userspace) return new DirectDialer();
  return cfg.dialMode === 'socks5' ? new TailscaledSocksDialer(supervisor) : new LocalApiDialer(cfg.socket);
}

/** The tailnet path, not started yet: main.ts creates it first so that a SIGTERM during start-up can stop it. */
export function createTailnet(cfg: TailnetConfig, log: Logger, opts?: SupervisorOptions): Tailnet {
  const supervisor = new TailscaledSupervisor(cfg, log, opts);
  return {
    dialer: dialerFor(cfg, supervisor),
    view: supervisor,
    supervisor,
    async start() {
      await supervisor.start();
      log.info({ mode: cfg.userspace ? `userspace, ${cfg.dialMode} dialing` : 'kernel (TUN)', selfIps: supervisor.state().selfIps }, 'tailscaled is Running; readiness waits for the netmap from control');
    },
    stop: () => supervisor.stop(),
  };
}

export async function startTailnet(cfg: TailnetConfig, log: Logger, opts?: SupervisorOptions): Promise<Tailnet> {
  const tailnet = createTailnet(cfg, log, opts);
  await tailnet.start();
  return tailnet;
}
