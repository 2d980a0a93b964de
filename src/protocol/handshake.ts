// The one handshake driver: the only file in protocol/ that touches a socket. It runs a pure machine (HTTP CONNECT
// or SOCKS5 CONNECT towards a device, tailscaled's SOCKS5 server or its LocalAPI `ts-dial` upgrade) over a
// connection before it becomes a raw byte stream: send the machine's hello, feed it what arrives until it is done
// or fails, and hand the socket on with no byte lost.
import type { Socket } from 'node:net';
import { DialError, reasonFromErrno, type FailureReason } from '../core/failure.js';
import { kStage } from '../core/socket-stage.js';

export interface HandshakeFailure {
  reason: FailureReason;
  message: string;
}

export type HandshakeStep =
  | { kind: 'need-more' }
  /** `consumed` bytes are dealt with: write `send` unless it is null, and go on with the rest. */
  | { kind: 'continue'; consumed: number; send: Buffer | null }
  /** Handshake complete after `consumed` bytes; whatever follows belongs to the stream. */
  | { kind: 'done'; consumed: number }
  | ({ kind: 'fail' } & HandshakeFailure);

/** One exchange as bytes in and decisions out; one instance per connection. */
export interface HandshakeMachine {
  /** First bytes to send. */
  readonly hello: Buffer;
  /** Sees all bytes received and not yet consumed. */
  feed(received: Buffer): HandshakeStep;
  /** The peer ended its side before feed() said done; `received` is what it sent and was not consumed. */
  closed(received: Buffer): HandshakeFailure;
}

/** Maps the code of a socket error during the handshake (err.code) to a reason. */
export type ErrorReason = (code: string | undefined) => FailureReason;

/** The peer's answer can't be larger than this (an HTTP reply head; a SOCKS reply is tiny). */
const MAX_REPLY_BYTES = 16 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Until the next owner takes a socket over, an error must not go unhandled (the process would crash);
 * the socket is destroyed by the error anyway and its owner sees `destroyed`.
 */
export function parkedSocketError(): void {}

/** Makes sure an error on `socket` is handled until someone else takes it over. */
export function park(socket: Socket): void {
  // listenerCount() with the listener counts in place; listeners() would copy the array on every call.
  if (socket.listenerCount('error', parkedSocketError) === 0) socket.on('error', parkedSocketError);
}

type HandshakeSocket = Socket & { [kStage]?: HandshakeRun };

class HandshakeRun {
  private received: Buffer = EMPTY;
  private timer: NodeJS.Timeout | undefined;
  private settled = false;
  resolve!: (s: Socket) => void;
  reject!: (e: DialError) => void;

  constructor(
    readonly socket: HandshakeSocket,
    private readonly machine: HandshakeMachine,
    readonly timeoutMs: number,
    readonly what: string,
    readonly errorReason: ErrorReason,
    readonly afterDial: boolean,
  ) {}

  start(): void {
    const s = this.socket;
    s[kStage] = this;
    park(s);
    this.timer = setTimeout(onTimeout, this.timeoutMs, this);
    // 'readable' + read() rather than 'data': once the listener is gone the socket is back in its initial mode, so
    // the next owner's 'data' listener or resume() starts the flow (a 'data' listener would leave it flowing).
    s.on('readable', onReadable);
    s.on('end', onEnd);
    s.on('close', onClose);
    s.on('error', onError);
    s.write(this.machine.hello);
  }

  read(): void {
    let chunk: Buffer | null;
    while (!this.settled && (chunk = this.socket.read() as Buffer | null) !== null) {
      this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
      this.advance();
    }
  }

  private advance(): void {
    for (;;) {
      const step = this.machine.feed(this.received);
      switch (step.kind) {
        case 'need-more':
          if (this.received.length > MAX_REPLY_BYTES) this.fail('protocol', 'reply too large');
          return;
        case 'continue':
          this.received = this.received.subarray(step.consumed);
          if (step.send !== null) this.socket.write(step.send);
          continue;
        case 'done':
          this.received = this.received.subarray(step.consumed);
          this.finish(null);
          return;
        case 'fail':
          this.fail(step.reason, step.message);
          return;
      }
    }
  }

  fail(reason: FailureReason, message: string): void {
    this.finish(new DialError(reason, `${this.what}: ${message}`));
  }

  ended(): void {
    const f = this.machine.closed(this.received);
    this.fail(f.reason, f.message);
  }

  private finish(err: DialError | null): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    const s = this.socket;
    s[kStage] = undefined;
    s.off('readable', onReadable);
    s.off('end', onEnd);
    s.off('close', onClose);
    s.off('error', onError);
    if (err !== null) {
      s.destroy();
      err.dialed = this.afterDial;
      this.reject(err);
      return;
    }
    // Bytes that came with the reply (the target's first bytes) go back to the front of the stream.
    if (this.received.length > 0) s.unshift(this.received);
    this.received = EMPTY;
    this.resolve(s);
  }
}

function onReadable(this: HandshakeSocket): void {
  this[kStage]?.read();
}

function onEnd(this: HandshakeSocket): void {
  this[kStage]?.ended();
}

function onClose(this: HandshakeSocket): void {
  this[kStage]?.fail('error', 'connection closed during the handshake');
}

function onError(this: HandshakeSocket, err: NodeJS.ErrnoException): void {
  const run = this[kStage];
  run?.fail(run.errorReason(err.code), err.code ?? err.message);
}

function onTimeout(run: HandshakeRun): void {
  run.fail('timeout', `no answer within ${run.timeoutMs} ms`);
}

/**
 * Runs `machine` on `socket` (connected, or still connecting: the hello waits in the socket's buffer). Resolves with
 * the socket in its initial, non-flowing mode, bytes past the handshake unshifted and an error listener parked on
 * it; rejects with DialError only, `what` naming the peer in its message, after destroying the socket. `afterDial`:
 * the socket already reaches the device (its proxy's handshake), so the DialError is marked `dialed`.
 */
export function runHandshake(socket: Socket, machine: HandshakeMachine, timeoutMs: number, what: string, errorReason: ErrorReason = reasonFromErrno, afterDial = false): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const run = new HandshakeRun(socket, machine, timeoutMs, what, errorReason, afterDial);
    run.resolve = resolve;
    run.reject = reject;
    run.start();
  });
}
