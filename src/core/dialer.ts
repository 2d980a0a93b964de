// A type-only import: nothing from node:net is loaded by this layer.
import type { Socket } from 'node:net';

/**
 * Opens TCP connections to device addresses: the kernel's stack (tailnet/direct-dialer.ts) when this host is on the
 * tailnet already, or one of the tailnet/ dialers that go through the tailscaled tailgate supervises.
 * Implementations reject with DialError, never with a bare errno error, and honour the timeout themselves.
 */
export interface Dialer {
  dial(host: string, port: number, timeoutMs: number): Promise<Socket>;
  /** null when dialing can be attempted now; otherwise why not (fail fast instead of waiting for a timeout). */
  unavailableReason(): string | null;
}
