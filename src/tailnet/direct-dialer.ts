import net from 'node:net';
import { DialError, reasonFromErrno } from '../core/failure.js';
import type { Dialer } from '../core/dialer.js';

/** Dials with the kernel's stack: right when this host is a tailnet member with a TUN device, and for tests. */
export class DirectDialer implements Dialer {
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
