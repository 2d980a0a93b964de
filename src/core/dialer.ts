// A type-only import: nothing from node:net is loaded by this layer.
import type { Socket } from 'node:net';

/**
 * Opens TCP connections to device addresses: the kernel's stack (tailnet/direct-dialer.ts) when this host is on the
 * tailnet already, or one of the tailnet/ dialers that go through the tailscaled tailgate supervises.
 * Implementations reject with DialError, never with a bare errno error, and honour the timeout themselves. Whether the
 * tailnet is up at all is not theirs to ask: the device connector's gate checks that once, before any dialer.
 */
export interface Dialer {
  dial(host: string, port: number, timeoutMs: number): Promise<Socket>;
}
