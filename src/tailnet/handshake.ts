// One request/response exchange with tailscaled before a connection becomes a raw byte stream: the SOCKS5
// greeting+CONNECT, or the LocalAPI `ts-dial` upgrade. Both dialers share the timing, error and hand-over rules.
import net from 'node:net';
import { DialError } from './dialer.js';

/** Says what the bytes so far mean: null = need more, a number = handshake done after that many bytes. Throws DialError on a refusal. */
export type HandshakeParser = (received: Buffer, ended: boolean) => number | null;

export interface HandshakeTarget {
  /** Where tailscaled listens (TCP for its SOCKS5 server, the unix socket for the LocalAPI). */
  endpoint: net.NetConnectOpts;
  /** The device address, for messages only. */
  target: string;
  /** What we are talking to, for messages only. */
  via: string;
}

const MAX_HANDSHAKE_BYTES = 16_384;

/**
 * Connects to tailscaled, sends `hello` at once (no round-trip wasted waiting for connect), and resolves with the
 * socket once `parse` accepts the reply. Any bytes past the reply are pushed back, so the next reader sees the
 * device's first bytes.
 */
export function handshake(to: HandshakeTarget, hello: Buffer, parse: HandshakeParser, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // Not half-open: tailscaled relays a dialed connection with two io.Copy loops and closes both directions as soon
    // as either ends, so its FIN always means "over". Closing our side at once also keeps a dead connection from
    // lingering writable (e.g. in a keep-alive pool) after tailscaled exits.
    const socket = net.connect({ ...to.endpoint, allowHalfOpen: false } as net.NetConnectOpts);
    socket.setNoDelay?.(true);
    let received: Buffer = Buffer.alloc(0);
    let settled = false;

    const finish = (err: DialError | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('error', onError);
      if (err !== null) {
        socket.destroy();
        reject(err);
      }
    };
    // 'readable' + read() rather than 'data': once the listener is gone the socket is back in its initial mode, so the
    // next owner's 'data' listener or pipe() starts the flow (a 'data' listener would leave it flowing or paused).
    const onReadable = () => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        if (received.length > MAX_HANDSHAKE_BYTES) {
          finish(new DialError('protocol', `${to.via}: oversized reply while dialing ${to.target}`));
          return;
        }
        let consumed: number | null;
        try {
          consumed = parse(received, false);
        } catch (err) {
          finish(asDialError(err, to));
          return;
        }
        if (consumed === null) continue;
        finish(null);
        if (consumed < received.length) socket.unshift(received.subarray(consumed));
        resolve(socket);
      }
    };
    const onEnd = () => {
      try {
        parse(received, true);
      } catch (err) {
        finish(asDialError(err, to));
        return;
      }
      finish(new DialError('error', `${to.via} closed the connection while dialing ${to.target}`));
    };
    const onError = (err: NodeJS.ErrnoException) => {
      // Refused or missing endpoint means tailscaled itself is gone, not the device.
      const down = err.code === 'ECONNREFUSED' || err.code === 'ENOENT' || err.code === 'ECONNRESET' || err.code === 'EPIPE';
      finish(new DialError(down ? 'network-down' : 'error', `${to.via} is not answering (${err.code ?? err.message})`));
    };
    const timer = setTimeout(() => finish(new DialError('timeout', `no answer from ${to.target} within ${timeoutMs} ms`)), timeoutMs);

    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.write(hello);
  });
}

function asDialError(err: unknown, to: HandshakeTarget): DialError {
  if (err instanceof DialError) return err;
  return new DialError('protocol', `${to.via}: ${(err as Error).message} while dialing ${to.target}`);
}
