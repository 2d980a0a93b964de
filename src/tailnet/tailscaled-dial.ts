// What both userspace dialers share: a connection to one of tailscaled's own endpoints (its SOCKS5 server, its
// LocalAPI socket) carrying one handshake that asks tailscaled to dial the device, after which it carries the device.
import net from 'node:net';
import type { FailureReason } from '../core/failure.js';
import { runHandshake, type HandshakeMachine } from '../protocol/handshake.js';

/** Refused, missing or cut endpoint means tailscaled itself is gone, not the device. */
function tailscaledErrorReason(code: string | undefined): FailureReason {
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'ECONNRESET' || code === 'EPIPE' ? 'network-down' : 'error';
}

/**
 * Connects to `endpoint` and runs `machine` at once (the hello is written before the connection is up, so no round
 * trip is spent waiting for it). `what` names the endpoint and the device for error messages.
 */
export function dialViaTailscaled(endpoint: net.NetConnectOpts, machine: HandshakeMachine, what: string, timeoutMs: number): Promise<net.Socket> {
  // Not half-open: tailscaled relays a dialed connection with two io.Copy loops and closes both directions as soon
  // as either ends, so its FIN always means "over". Closing our side at once also keeps a dead connection from
  // lingering writable (e.g. in a keep-alive pool) after tailscaled exits.
  const socket = net.connect({ ...endpoint, allowHalfOpen: false } as net.NetConnectOpts);
  socket.setNoDelay?.(true);
  return runHandshake(socket, machine, timeoutMs, what, tailscaledErrorReason);
}
