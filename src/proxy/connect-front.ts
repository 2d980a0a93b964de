// The HTTP listener's first reader: a CONNECT request head in the plain form every client sends is read here, by
// hand, and goes straight to the tunnel pipeline; every other connection is handed to Node's HTTP server with its
// bytes put back, as if it had been accepted there. Node's server sets up a parser, its per-connection state and
// bound handlers, listener wrappers on the socket and an IncomingMessage for each connection, and tears most of it
// down again when a CONNECT arrives: work a tunnel never uses (its cost is measured in bench/README.md).
//
// What the hand-over keeps: a head outside the plain form (protocol/http.ts scanConnectHead) reaches llhttp whole and
// is answered exactly as before (431, the llhttp refusals, the forwarder). What the front does itself is what Node
// would have done at those points: the handshake timeout from accept to a complete head (408, one sweep per listener
// instead of a timer per connection, as Node's headersTimeout check does) and a client's FIN before its head ends.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { scanConnectHead, type ConnectHead } from '../protocol/http.js';
import { answerAndClose, ignoreSocketError } from './sockets.js';
import { kStage } from '../core/socket-stage.js';

export interface ConnectFrontOptions {
  /** Largest request head; one at or over it goes to Node's parser, which answers 431. */
  maxHeadBytes: number;
  handshakeMs: number;
  /** How often the handshake timeout is checked. */
  sweepMs: number;
  /** A complete plain CONNECT head: the socket is paused, `rest` holds what the client sent after the head. */
  connect(socket: Socket, head: ConnectHead, rest: Buffer): void;
  /** The answer to a head not complete within handshakeMs. */
  timeoutAnswer: string;
  /** The answer to a FIN in the middle of a head (Node's parser: an unexpected end). */
  truncatedAnswer: string;
}

/**
 * A head still incomplete after this many reads goes to Node's parser, which reads incrementally. The front re-reads a
 * growing head from its start on every piece, so a client sending its head a byte per packet would otherwise cost time
 * quadratic in its length (16 KiB in single bytes: some hundred MB copied and scanned). Clients send a CONNECT head in
 * one piece, rarely a few. Node's handshake timeout starts at the hand-over, so such a client has at most twice the
 * handshake timeout for its head.
 */
const MAX_HEAD_PIECES = 16;

interface PartialHead {
  bytes: Buffer;
  pieces: number;
}

/** The server's front, for the connection listener. */
const kFront = Symbol('tailgate.connect-front');
type FrontServer = Server & { [kFront]?: ConnectFront };
type FrontSocket = Socket & { [kStage]?: ConnectFront };

export class ConnectFront {
  /** Sockets without a complete head yet, with when they were accepted (in that order: the sweep stops early). */
  private readonly waiting = new Map<FrontSocket, number>();
  /** What sockets whose head came in pieces have sent so far. */
  private readonly partial = new Map<FrontSocket, PartialHead>();
  private readonly sweeper: NodeJS.Timeout;
  /** Node's HTTP server's own connection listener, for the connections this front hands over. */
  private readonly nodeConnection: (socket: Socket) => void;

  /**
   * Takes the server's connections over from Node's own listener, which it keeps for the hand-over. Throws unless that
   * listener is the only one, so a change in Node's wiring is found at start, not on a customer's connection.
   */
  constructor(
    private readonly server: Server,
    private readonly opts: ConnectFrontOptions,
  ) {
    const listeners = server.listeners('connection');
    if (listeners.length !== 1) throw new Error(`expected Node's HTTP server to have one 'connection' listener, found ${listeners.length}`);
    this.nodeConnection = listeners[0] as (socket: Socket) => void;
    server.removeListener('connection', this.nodeConnection);
    server.on('connection', onConnection);
    (server as FrontServer)[kFront] = this;
    this.sweeper = setInterval(sweep, opts.sweepMs, this);
    this.sweeper.unref();
    server.on('close', () => clearInterval(this.sweeper));
  }

  accept(socket: FrontSocket): void {
    socket[kStage] = this;
    this.waiting.set(socket, performance.now());
    socket.on('data', onHeadData);
    socket.on('end', onHeadEnd);
    socket.on('error', ignoreSocketError);
  }

  read(socket: FrontSocket, chunk: Buffer): void {
    const before = this.partial.get(socket);
    const bytes = before === undefined ? chunk : Buffer.concat([before.bytes, chunk]);
    const scan = scanConnectHead(bytes, this.opts.maxHeadBytes);
    if (scan.kind === 'need-more') {
      if (before === undefined) {
        this.partial.set(socket, { bytes, pieces: 1 });
        return;
      }
      if (++before.pieces < MAX_HEAD_PIECES) {
        before.bytes = bytes;
        return;
      }
    }
    this.release(socket);
    if (scan.kind !== 'connect') {
      this.handOver(socket, bytes);
      return;
    }
    socket.pause();
    this.opts.connect(socket, scan, bytes.subarray(scan.headLength));
  }

  /** The client ended its side before its head was complete. */
  ended(socket: FrontSocket): void {
    const partial = this.partial.get(socket);
    this.release(socket);
    // Node's parser: nothing sent is a plain close; part of a head is an unexpected end, answered 400.
    if (partial === undefined) socket.destroy();
    else answerAndClose(socket, this.opts.truncatedAnswer);
  }

  /** Sockets past the handshake timeout are answered 408 (those already gone are dropped). */
  sweep(): void {
    const oldest = performance.now() - this.opts.handshakeMs;
    for (const [socket, acceptedAt] of this.waiting) {
      if (acceptedAt > oldest) return;
      this.release(socket);
      if (!socket.destroyed) answerAndClose(socket, this.opts.timeoutAnswer);
    }
  }

  private release(socket: FrontSocket): void {
    this.waiting.delete(socket);
    this.partial.delete(socket);
    socket.off('data', onHeadData);
    socket.off('end', onHeadEnd);
  }

  /**
   * Node's HTTP server takes the connection with every byte read so far. Paused while they are put back, so that none
   * is emitted before Node's listener is there; it flows again on a later tick, before any new read reaches Node's
   * parser (which reads the socket's handle itself from then on), so the bytes keep their order.
   */
  private handOver(socket: FrontSocket, bytes: Buffer): void {
    socket.off('error', ignoreSocketError);
    socket.pause();
    socket.unshift(bytes);
    this.nodeConnection.call(this.server, socket);
    socket.resume();
  }
}

function onConnection(this: FrontServer, socket: Socket): void {
  this[kFront]!.accept(socket);
}

function onHeadData(this: FrontSocket, chunk: Buffer): void {
  this[kStage]!.read(this, chunk);
}

function onHeadEnd(this: FrontSocket): void {
  this[kStage]!.ended(this);
}

function sweep(front: ConnectFront): void {
  front.sweep();
}
