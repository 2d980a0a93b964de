import type { Socket } from 'node:net';

function destroySelf(this: Socket): void {
  this.destroy();
}

/**
 * Writes a final answer and closes once it is flushed. destroy() straight after write() could drop the
 * answer; end() alone would leave the socket to a client that never closes its side (allowHalfOpen).
 */
export function answerAndClose(socket: Socket, answer: Buffer | string | null): void {
  if (answer !== null && socket.writable) {
    socket.end(answer);
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', destroySelf);
  } else {
    socket.destroy();
  }
}

/** Keeps an error on a socket in a hand-over state from being fatal; the error destroys the socket anyway. */
export function ignoreSocketError(): void {}

/**
 * A TLS client that failed or timed out its handshake: closed. Node leaves the socket open once a 'tlsClientError'
 * listener exists, and the listener is needed to keep scanners and bad clients out of the error log.
 */
export function dropTlsClient(_err: Error, socket: Socket): void {
  socket.destroy();
}

/**
 * TLS listeners accept without allowHalfOpen, so a client that sends FIN during the TLS handshake is closed at once
 * rather than at the handshake timeout; once the handshake is done the socket is half-open capable like a plain one.
 */
export function allowHalfOpenAfterHandshake(socket: Socket): void {
  socket.allowHalfOpen = true;
}
