import net from 'node:net';

/**
 * Why a connection attempt failed, in the terms both listeners translate into their own replies
 * (HTTP status, SOCKS5 reply code). Kept small on purpose: clients can act on these and nothing finer.
 */
export type FailureReason =
  | 'network-down' // tailnet (or our path to it) is not up: HTTP 503, SOCKS 0x03
  | 'offline' // device known to be offline: HTTP 502, SOCKS 0x04
  | 'unreachable' // no route to the host: HTTP 502, SOCKS 0x04
  | 'refused' // TCP RST: HTTP 502, SOCKS 0x05
  | 'timeout' // no answer in time: HTTP 504, SOCKS 0x06
  | 'not-allowed' // the device proxy refused us (auth, ACL): HTTP 502, SOCKS 0x02
  | 'protocol' // the device proxy spoke something we do not understand: HTTP 502, SOCKS 0x01
  | 'error'; // anything else: HTTP 502, SOCKS 0x01

export class DialError extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
  ) {
    super(message);
    this.name = 'DialError';
  }
}

/**
 * Opens TCP connections to device addresses. The core uses plain `net.connect` (the host is on the tailnet
 * already); the tailnet module adds dialers that go through a supervised tailscaled.
 * Implementations reject with DialError, never with a bare errno error, and honour the timeout themselves.
 */
export interface Dialer {
  dial(host: string, port: number, timeoutMs: number): Promise<net.Socket>;
  /** null when dialing can be attempted now; otherwise why not (fail fast instead of waiting for a timeout). */
  unavailableReason(): string | null;
}

export function reasonFromErrno(code: string | undefined): FailureReason {
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unreachable';
    case 'ENETUNREACH':
    case 'ENETDOWN':
      return 'network-down';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return 'error';
  }
}

/** Dials with the kernel's stack: right when this host is a tailnet member with a TUN device, and for tests. */
export class DirectDialer implements Dialer {
  unavailableReason(): string | null {
    return null;
  }

  dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new DialError('timeout', `no answer from ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(socket);
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new DialError(reasonFromErrno(err.code), `${host}:${port}: ${err.code ?? err.message}`));
      });
    });
  }
}
