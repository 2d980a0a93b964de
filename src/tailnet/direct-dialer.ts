import net from 'node:net';
import { DialError, reasonFromErrno } from '../core/failure.js';
import type { Dialer } from '../core/dialer.js';
import { kStage } from '../core/socket-stage.js';

// One dial's state lives on its socket and the handlers are shared: no closures per dial. The error listener is
// taken off with off() (never removeAllListeners(), which would take the socket's event table out of Node's
// fixed-shape mode and into a dictionary that every idle tunnel would then carry).
type DialSocket = net.Socket & { [kStage]?: PendingDial };

interface PendingDial {
  timer: NodeJS.Timeout | undefined;
  resolve: (s: net.Socket) => void;
  reject: (e: DialError) => void;
  host: string;
  port: number;
  timeoutMs: number;
}

function settle(socket: DialSocket): PendingDial {
  const dial = socket[kStage]!;
  socket[kStage] = undefined;
  clearTimeout(dial.timer);
  socket.off('connect', onConnect);
  socket.off('error', onError);
  return dial;
}

function onConnect(this: DialSocket): void {
  settle(this).resolve(this);
}

function onError(this: DialSocket, err: NodeJS.ErrnoException): void {
  const dial = settle(this);
  this.destroy();
  dial.reject(new DialError(reasonFromErrno(err.code), `${dial.host}:${dial.port}: ${err.code ?? err.message}`));
}

function onTimeout(socket: DialSocket): void {
  const dial = settle(socket);
  socket.destroy();
  dial.reject(new DialError('timeout', `no answer from ${dial.host}:${dial.port} within ${dial.timeoutMs} ms`));
}

/** Dials with the kernel's stack: right when this host is a tailnet member with a TUN device, and for tests. */
export class DirectDialer implements Dialer {
  dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket: DialSocket = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
      socket[kStage] = { timer: setTimeout(onTimeout, timeoutMs, socket), resolve, reject, host, port, timeoutMs };
      socket.on('connect', onConnect);
      socket.on('error', onError);
    });
  }
}
