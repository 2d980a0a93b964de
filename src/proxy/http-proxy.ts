// HTTP proxy front end on Node's http server: CONNECT tunnels go through the tunnel pipeline, absolute-form requests
// to the forwarder. Node's parser gives us chunked bodies, keep-alive, pipelining,
// the header size limit (431) and the head timeout (408) without a hand-written HTTP/1 parser.
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import type { Socket } from 'node:net';
import type { DialError } from '../core/failure.js';
import { parseAuthority, parseBasicCredentials } from '../protocol/http.js';
import type { ListenerContext } from '../tunnel/listener.js';
import type { TunnelAnswers, TunnelPipeline } from '../tunnel/pipeline.js';
import { isAcceptError } from './accept-guard.js';
import type { ProxyDeps } from './deps.js';
import { PROXY_USER_REFUSAL_DETAILS } from '../protocol/proxy-user.js';
import { AUTH_REQUIRED_TEXT, HTTP_FAILURES, KEY_STORE_TEXT, PROXY_AUTHENTICATE, REFUSAL_STATUS, refusalHeaders, userParameterHeaders } from './failures.js';
import { ConnectFront } from './connect-front.js';
import { Forwarder } from './http-forward.js';
import { allowHalfOpenAfterHandshake, answerAndClose, dropTlsClient, ignoreSocketError } from './sockets.js';

const CONNECT_ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n', 'latin1');

/** A complete error response for a socket no longer owned by Node's HTTP machinery. */
export function rawErrorResponse(status: number, tag: string, text: string, extraHeaders = ''): string {
  const body = `${text}\n`;
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    `X-Tailgate-Error: ${tag}\r\n${extraHeaders}Connection: close\r\n\r\n${body}`
  );
}

const AUTH_REQUIRED = rawErrorResponse(407, 'auth', AUTH_REQUIRED_TEXT, `Proxy-Authenticate: ${PROXY_AUTHENTICATE}\r\n`);
/** Refusals of the user name's parameters, by their (fixed) texts: made once, not per connection. */
const PARAMETER_REFUSED = new Map(
  PROXY_USER_REFUSAL_DETAILS.map((detail) => {
    const headers = Object.entries(userParameterHeaders(detail)).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    return [detail, rawErrorResponse(407, 'user-parameter', detail, headers)];
  }),
);
const KEY_STORE_UNAVAILABLE = rawErrorResponse(503, 'key-store', KEY_STORE_TEXT);

/** The answer to a failed CONNECT, by failure reason. */
function dialFailureResponse(err: DialError): string {
  const f = HTTP_FAILURES[err.reason];
  return rawErrorResponse(f.status, err.reason, f.text);
}

/** How a CONNECT tunnel's outcome reaches the client; the session is the client socket. */
const CONNECT_ANSWERS: TunnelAnswers<Socket> = {
  established(socket) {
    socket.write(CONNECT_ESTABLISHED);
    socket.off('error', ignoreSocketError);
  },
  refused(socket, refusal) {
    const extra = Object.entries(refusalHeaders(refusal)).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    answerAndClose(socket, rawErrorResponse(REFUSAL_STATUS, refusal.reason, refusal.text, extra));
  },
  failed(socket, err) {
    answerAndClose(socket, dialFailureResponse(err));
  },
};

const NO_CREDENTIALS = { username: Buffer.alloc(0), password: Buffer.alloc(0) };

/**
 * A CONNECT request, from Node's parser or the raw front: `authority` is the request target as sent, `authorization`
 * the Proxy-Authorization value. The socket is paused and an error on it ignored. Never rejects: a bug costs the one
 * connection.
 */
async function handleConnect(ctx: ListenerContext, pipeline: TunnelPipeline, authority: string, authorization: string | undefined, socket: Socket, head: Buffer): Promise<void> {
  try {
    const target = parseAuthority(authority);
    if (target === null) {
      answerAndClose(socket, rawErrorResponse(400, 'bad-request', 'CONNECT needs a host:port target'));
      return;
    }
    const creds = parseBasicCredentials(authorization) ?? NO_CREDENTIALS;
    const answer = pipeline.authenticate(ctx, creds.username, creds.password, socket.remoteAddress);
    const auth = answer instanceof Promise ? await answer : answer;
    if (!auth.ok) {
      if (auth.throttled !== undefined) {
        CONNECT_ANSWERS.refused(socket, auth.throttled);
        return;
      }
      answerAndClose(socket, auth.storeDown ? KEY_STORE_UNAVAILABLE : auth.parameter === undefined ? AUTH_REQUIRED : PARAMETER_REFUSED.get(auth.parameter)!);
      return;
    }
    if (socket.destroyed) return;
    await pipeline.connect(ctx, CONNECT_ANSWERS, socket, socket, auth, target, head.length > 0 ? head : null);
  } catch (err) {
    ctx.parts.log.error({ err }, 'CONNECT handling failed');
    socket.destroy();
  }
}

const MALFORMED = rawErrorResponse(400, 'bad-request', 'malformed HTTP request');
const HEAD_TIMEOUT = rawErrorResponse(408, 'handshake-timeout', 'request head not received in time');
/**
 * What Node's parser (llhttp) refuses before a request reaches us, answered in our words rather than its messages,
 * which change between Node versions. Probed with raw bytes on Node 20 (test/hostile-http.test.ts pins each one).
 */
const PARSE_ERRORS = new Map(
  Object.entries({
    HPE_INVALID_TRANSFER_ENCODING: 'invalid Transfer-Encoding, or Transfer-Encoding together with Content-Length',
    HPE_INVALID_CONTENT_LENGTH: 'invalid Content-Length, or Content-Length together with Transfer-Encoding',
    HPE_UNEXPECTED_CONTENT_LENGTH: 'Content-Length repeated',
    HPE_INVALID_HEADER_TOKEN: 'invalid character or folded line (obs-fold) in a header',
    HPE_CR_EXPECTED: 'a line ended in LF without CR',
    HPE_LF_EXPECTED: 'a CR not followed by LF',
    HPE_INVALID_URL: 'invalid character in the request target',
  }).map(([code, text]) => [code, rawErrorResponse(400, 'bad-request', `malformed HTTP request: ${text}`)]),
);

function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  // Same care as Node's default handler: never write into the middle of a response already on the wire.
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || (inFlight != null && inFlight.headersSent)) {
    socket.destroy();
    return;
  }
  let response: string;
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      response = rawErrorResponse(431, 'header-too-large', 'request head is larger than this proxy accepts');
      break;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      response = HEAD_TIMEOUT;
      break;
    default:
      response = PARSE_ERRORS.get(err.code ?? '') ?? MALFORMED;
  }
  answerAndClose(socket, response);
}

/** Node's HTTP options for both proxy servers, plain and TLS. */
function httpServerOptions(deps: ProxyDeps): http.ServerOptions {
  const { handshakeMs } = deps.timeouts;
  return {
    maxHeaderSize: deps.maxHeaderBytes,
    // headersTimeout is the handshake timeout; requestTimeout would cap whole uploads, so it is off.
    headersTimeout: handshakeMs,
    requestTimeout: 0,
    // Node would answer a missing Host itself, in its own words; the forwarder does (protocol/http.ts).
    requireHostHeader: false,
    // How often Node checks headersTimeout: fine enough that the timeout is honoured within ~10%.
    connectionsCheckingInterval: Math.min(1000, Math.max(25, Math.floor(handshakeMs / 10))),
    noDelay: true,
  };
}

export function createHttpProxyServer(deps: ProxyDeps): http.Server {
  const options = httpServerOptions(deps);
  const { pipeline } = deps;
  const ctx = pipeline.listener('http');
  const server = serveHttpProxy(http.createServer(options), deps, ctx);
  // Plain CONNECT heads are read by hand; everything else still reaches Node's parser (connect-front.ts).
  new ConnectFront(server, {
    maxHeadBytes: deps.maxHeaderBytes,
    handshakeMs: deps.timeouts.handshakeMs,
    sweepMs: options.connectionsCheckingInterval!,
    connect: (socket, head, rest) => void handleConnect(ctx, pipeline, head.authority, head.authorization, socket, rest),
    timeoutAnswer: HEAD_TIMEOUT,
    truncatedAnswer: MALFORMED,
  });
  return server;
}

/**
 * The same proxy behind TLS (`curl --proxy https://…`). https.Server rather than a tls.Server feeding an http.Server:
 * Node's header-timeout sweep only runs for a server that itself listens, and https.Server is an http server in all
 * but the socket it accepts, so CONNECT, 'checkContinue' and client errors arrive exactly as on the plain listener.
 */
export function createHttpsProxyServer(deps: ProxyDeps, secure: SecureContextOptions): https.Server {
  // The TLS handshake is part of the client's handshake: it gets the same time as the request head.
  const server = https.createServer({ ...httpServerOptions(deps), ...secure, handshakeTimeout: deps.timeouts.handshakeMs });
  // After Node's own listener has made it an HTTP connection: a CONNECT tunnel relays FINs one way at a time.
  server.on('secureConnection', allowHalfOpenAfterHandshake);
  // Node's https.Server passes a failed TLS handshake on as 'clientError', whose handler answers in HTTP: bytes a
  // client without a TLS session cannot read. Such a client is only closed.
  server.removeAllListeners('tlsClientError');
  server.on('tlsClientError', dropTlsClient);
  return serveHttpProxy(server as unknown as http.Server, deps, deps.pipeline.listener('https')) as unknown as https.Server;
}

function serveHttpProxy(server: http.Server, deps: ProxyDeps, ctx: ListenerContext): http.Server {
  const { pipeline } = deps;
  const { listener } = ctx;
  const { handshakeMs, idleMs } = deps.timeouts;
  // An idle keep-alive connection has the handshake timeout to start its next request.
  server.keepAliveTimeout = handshakeMs;
  server.timeout = idleMs;

  const forwarder = new Forwarder(ctx, deps);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => forwarder.handle(req, res, false));
  // Answering 100 Continue ourselves, after the key is checked, spares a client uploading a body we refuse.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => forwarder.handle(req, res, true));
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.pause();
    socket.on('error', ignoreSocketError);
    void handleConnect(ctx, pipeline, req.url ?? '', req.headers['proxy-authorization'], socket, head);
  });
  server.on('clientError', onClientError);
  server.on('close', () => forwarder.close());
  // Accept failures are the accept guard's (counted, logged once per burst); anything else is logged here.
  server.on('error', (err) => {
    if (!isAcceptError(err)) deps.log.error({ err, listener }, 'http proxy listener error');
  });
  return server;
}
