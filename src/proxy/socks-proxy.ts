// SOCKS5 front end: a thin I/O shell around the pure Socks5Parser that hands the tunnel to the pipeline. The success
// reply goes out only after the device has accepted the onward connection, so a client always learns the real outcome.
import net, { type Socket } from 'node:net';
import tls, { type SecureContextOptions } from 'node:tls';
import type { Target } from '../core/target.js';
import { AUTH_FAILED, AUTH_OK, SocksReply, Socks5Parser, socksReply, type SocksReplyCode } from '../protocol/socks5.js';
import type { ListenerContext } from '../tunnel/listener.js';
import type { Authenticated, Authentication, TunnelAnswers, TunnelPipeline } from '../tunnel/pipeline.js';
import { isAcceptError } from './accept-guard.js';
import type { ProxyDeps } from './deps.js';
import { SOCKS_FAILURES, SOCKS_REFUSED } from './failures.js';
import { allowHalfOpenAfterHandshake, answerAndClose, dropTlsClient } from './sockets.js';
import { kStage } from '../core/socket-stage.js';

const SUCCEEDED = socksReply(SocksReply.Succeeded);

/** How a tunnel's outcome reaches the SOCKS5 client. */
const SOCKS_ANSWERS: TunnelAnswers<SocksSession> = {
  established(session) {
    session.done();
    const { socket } = session;
    socket.off('error', onSessionError);
    socket.off('close', onSessionClose);
    // The session (its parser, credentials and handlers) is done with: an open tunnel must not keep it.
    socket[kStage] = undefined;
    socket.write(SUCCEEDED);
  },
  refused(session) {
    session.fail(SOCKS_REFUSED);
  },
  failed(session, err) {
    session.fail(SOCKS_FAILURES[err.reason]);
  },
};

type SessionSocket = Socket & { [kStage]?: SocksSession };

class SocksSession {
  readonly parser = new Socks5Parser();
  auth: Authenticated | null = null;
  /** The key store failed during auth: the request gets a general failure instead of a tunnel. */
  storeFailed = false;
  handshakeTimer: NodeJS.Timeout | undefined;
  /** True once the request is parsed; from then on the connect timeout governs. */
  requested = false;

  constructor(
    readonly ctx: ListenerContext,
    readonly pipeline: TunnelPipeline,
    readonly socket: SessionSocket,
  ) {}

  advance(): void {
    const { parser, socket } = this;
    for (;;) {
      if (socket.destroyed) return;
      const step = parser.next();
      switch (step.kind) {
        case 'need-more':
          return;
        case 'method':
          socket.write(step.reply);
          continue;
        case 'credentials':
          // Hold further input (a pipelined request) until the key is checked.
          socket.pause();
          this.checkCredentials(step.username, step.password);
          return;
        case 'connect':
          this.requested = true;
          clearTimeout(this.handshakeTimer);
          socket.pause();
          socket.off('data', onSessionData);
          socket.off('end', onSessionEnd);
          void this.connect(step.target);
          return;
        case 'reject':
          this.done();
          answerAndClose(socket, step.reply);
          return;
      }
    }
  }

  /** A cached key is answered within this call; any other waits for the key store. */
  private checkCredentials(username: Buffer, password: Buffer): void {
    try {
      const answer = this.pipeline.authenticate(this.ctx, username, password, this.socket.remoteAddress);
      if (answer instanceof Promise) answer.then((auth) => this.checked(auth)).catch((err: unknown) => this.fatal(err));
      else this.checked(answer);
    } catch (err) {
      this.fatal(err);
    }
  }

  private checked(auth: Authentication): void {
    // A throttled address gets the same RFC 1929 failure as wrong credentials: SOCKS5 has no way to say more.
    if (this.socket.destroyed) return;
    if (auth.ok) {
      this.auth = auth;
    } else if (auth.storeDown) {
      // Not the client's fault, so not an auth failure: let it send its request and answer that with a
      // general failure.
      this.storeFailed = true;
    } else {
      this.done();
      answerAndClose(this.socket, AUTH_FAILED);
      return;
    }
    this.socket.write(AUTH_OK);
    this.socket.resume();
    this.advance();
  }

  /** Never rejects. */
  private async connect(target: Target): Promise<void> {
    try {
      const auth = this.auth;
      if (auth === null) {
        this.fail(SocksReply.GeneralFailure);
        return;
      }
      await this.pipeline.connect(this.ctx, SOCKS_ANSWERS, this, this.socket, auth, target, this.parser.rest());
    } catch (err) {
      this.fatal(err);
    }
  }

  fail(code: SocksReplyCode): void {
    this.done();
    answerAndClose(this.socket, socksReply(code));
  }

  /** Handshake over (either way): no more timer. */
  done(): void {
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
  }

  /** Bugs must cost one connection, never the process. */
  fatal(err: unknown): void {
    this.done();
    this.ctx.parts.log.error({ err }, 'socks5 session failed');
    this.socket.destroy();
  }
}

function onSessionData(this: SessionSocket, chunk: Buffer): void {
  const s = this[kStage]!;
  s.parser.push(chunk);
  s.advance();
}

function onSessionEnd(this: SessionSocket): void {
  // The client gave up before finishing its handshake; there is nobody to answer.
  this.destroy();
}

function onSessionError(this: SessionSocket): void {
  // Node destroys the socket after an error; this listener only keeps the error from being fatal.
}

function onSessionClose(this: SessionSocket): void {
  this[kStage]!.done();
}

function onHandshakeTimeout(session: SocksSession): void {
  session.handshakeTimer = undefined;
  if (!session.requested) session.socket.destroy();
}

/** What both SOCKS5 listeners do with an accepted socket, plain or TLS (after its handshake). */
function socksSessions(deps: ProxyDeps, listener: 'socks5' | 'socks5-tls'): (socket: SessionSocket) => void {
  const { pipeline } = deps;
  const ctx = pipeline.listener(listener);
  return (socket: SessionSocket) => {
    const session = new SocksSession(ctx, pipeline, socket);
    socket[kStage] = session;
    socket.on('data', onSessionData);
    socket.on('end', onSessionEnd);
    socket.on('error', onSessionError);
    socket.on('close', onSessionClose);
    session.handshakeTimer = setTimeout(onHandshakeTimeout, deps.timeouts.handshakeMs, session);
  };
}

/** Accept failures are the accept guard's (counted, logged once per burst); anything else is logged here. */
function onListenerError(server: net.Server, deps: ProxyDeps, listener: 'socks5' | 'socks5-tls'): void {
  server.on('error', (err) => {
    if (!isAcceptError(err)) deps.log.error({ err, listener }, 'socks5 listener error');
  });
}

export function createSocksServer(deps: ProxyDeps): net.Server {
  // allowHalfOpen: a client's FIN must end only its direction of the tunnel.
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, socksSessions(deps, 'socks5'));
  onListenerError(server, deps, 'socks5');
  return server;
}

/**
 * SOCKS5 inside TLS (stunnel, gost `socks5+tls`, a TLS client library): the same sessions on the decrypted socket,
 * which 'secureConnection' hands over once the TLS handshake is done.
 */
export function createSocksTlsServer(deps: ProxyDeps, secure: SecureContextOptions): tls.Server {
  // The TLS handshake counts against the client's handshake time, as the SOCKS exchange after it does.
  const sessions = socksSessions(deps, 'socks5-tls');
  const server = tls.createServer({ ...secure, noDelay: true, handshakeTimeout: deps.timeouts.handshakeMs }, (socket: SessionSocket) => {
    allowHalfOpenAfterHandshake(socket);
    sessions(socket);
  });
  server.on('tlsClientError', dropTlsClient);
  onListenerError(server, deps, 'socks5-tls');
  return server;
}
