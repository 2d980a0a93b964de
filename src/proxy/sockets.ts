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
