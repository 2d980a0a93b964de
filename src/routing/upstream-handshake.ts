// Drives a device-side handshake (HTTP CONNECT or SOCKS5 CONNECT) on a freshly dialled socket. The
// protocol logic lives in small pure machines (upstream-http.ts, upstream-socks5.ts); this file owns the
// socket events, the deadline, and handing the socket back with no byte lost.
import type { Socket } from 'node:net';
import { DialError, reasonFromErrno, type FailureReason } from '../tailnet/dialer.js';

export type HandshakeProgress =
  | { kind: 'need-more' }
  /** Write `data`, drop `consumed` bytes of input, keep going. */
  | { kind: 'send'; data: Buffer; consumed: number }
  /** Handshake complete after `consumed` bytes; whatever follows belongs to the tunnel. */
  | { kind: 'done'; consumed: number }
  | { kind: 'fail'; reason: FailureReason; message: string };

export interface UpstreamHandshake {
  /** First bytes to send. */
  readonly hello: Buffer;
  /** Sees all bytes received and not yet consumed. */
  feed(received: Buffer): HandshakeProgress;
}

/** The device's answer can't be larger than this (an HTTP reply head, a SOCKS reply is tiny). */
const MAX_REPLY_BYTES = 16 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Until the relay takes a socket over, an error must not go unhandled (the process would crash);
 * the socket is destroyed by the error anyway and its owner sees `destroyed`.
 */
export function parkedSocketError(): void {}

/** Makes sure an error on `socket` is handled until someone else takes it over. */
export function park(socket: Socket): void {
  if (!socket.listeners('error').includes(parkedSocketError)) socket.on('error', parkedSocketError);
}

class HandshakeRun {
  private received: Buffer = EMPTY;
  private timer: NodeJS.Timeout | undefined;
  private settled = false;
  resolve!: (s: Socket) => void;
  reject!: (e: DialError) => void;

  constructor(
    private readonly socket: Socket,
    private readonly machine: UpstreamHandshake,
    private readonly what: string,
  ) {}

  start(timeoutMs: number): void {
    const s = this.socket;
    park(s);
    this.timer = setTimeout(this.onTimeout, timeoutMs, this);
    s.on('data', this.onData);
    s.on('error', this.onError);
    s.on('end', this.onEnd);
    s.on('close', this.onClose);
    s.write(this.machine.hello);
  }

  private finish(err: DialError | null): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    const s = this.socket;
    s.off('data', this.onData);
    s.off('error', this.onError);
    s.off('end', this.onEnd);
    s.off('close', this.onClose);
    if (err !== null) {
      s.destroy();
      this.reject(err);
      return;
    }
    // Stop the flow before handing over: the relay's pipe() resumes it, and bytes that arrived with the
    // reply go back to the front of the stream.
    s.pause();
    if (this.received.length > 0) s.unshift(this.received);
    this.received = EMPTY;
    this.resolve(s);
  }

  // Arrow properties: one handshake per tunnel setup, not per relayed byte, and they need `this`.
  private readonly onData = (chunk: Buffer): void => {
    this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
    for (;;) {
      const p = this.machine.feed(this.received);
      switch (p.kind) {
        case 'need-more':
          if (this.received.length > MAX_REPLY_BYTES) this.finish(new DialError('protocol', `${this.what}: reply too large`));
          return;
        case 'send':
          this.received = this.received.subarray(p.consumed);
          this.socket.write(p.data);
          continue;
        case 'done':
          this.received = this.received.subarray(p.consumed);
          this.finish(null);
          return;
        case 'fail':
          this.finish(new DialError(p.reason, `${this.what}: ${p.message}`));
          return;
      }
    }
  };

  private readonly onError = (err: NodeJS.ErrnoException): void => {
    this.finish(new DialError(reasonFromErrno(err.code), `${this.what}: ${err.code ?? err.message}`));
  };

  private readonly onEnd = (): void => {
    this.finish(new DialError('protocol', `${this.what}: device closed the connection during the handshake`));
  };

  private readonly onClose = (): void => {
    this.finish(new DialError('error', `${this.what}: connection closed during the handshake`));
  };

  private onTimeout(this: void, run: HandshakeRun): void {
    run.finish(new DialError('timeout', `${run.what}: no answer within the connect timeout`));
  }
}

/** Runs `machine` on `socket`; resolves with the socket paused and ready to relay, rejects with DialError only. */
export function runHandshake(socket: Socket, machine: UpstreamHandshake, timeoutMs: number, what: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const run = new HandshakeRun(socket, machine, what);
    run.resolve = resolve;
    run.reject = reject;
    run.start(timeoutMs);
  });
}
