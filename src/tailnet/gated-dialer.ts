import type net from 'node:net';
import type { Dialer } from '../core/dialer.js';
import { DialError } from '../core/failure.js';
import { DirectDialer } from './direct-dialer.js';

/** Whether the tailnet path can carry a dial now; the supervisor answers it from its latest view of tailscaled. */
export interface Availability {
  unavailableReason(): string | null;
}

export const ALWAYS_AVAILABLE: Availability = { unavailableReason: () => null };

/**
 * Kernel mode: the TUN device carries connections, so the kernel's stack dials; but while tailscaled is down or not
 * Running a dial would hang until its timeout, so it is refused at once instead.
 */
export class GatedDirectDialer implements Dialer {
  private readonly direct = new DirectDialer();

  constructor(private readonly gate: Availability) {}

  unavailableReason(): string | null {
    return this.gate.unavailableReason();
  }

  async dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    const down = this.gate.unavailableReason();
    if (down !== null) throw new DialError('network-down', down);
    return this.direct.dial(host, port, timeoutMs);
  }
}
