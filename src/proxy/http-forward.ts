// Absolute-form requests (`GET http://host/path`): forwarded through the device's proxy on connections
// from the DeviceConnector. An HTTP device gets the absolute-form request itself; a SOCKS5 device gets a
// SOCKS CONNECT to the target and then the origin-form request. http-proxy-agent is not an option here:
// it dials with net.connect itself, which cannot go through our Dialer (tailscaled in userspace mode).
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { DialError } from '../core/failure.js';
import { keyTag } from '../core/key.js';
import type { DeviceRoute } from '../core/route.js';
import { endToEndHeaders, parseAbsoluteHttpUrl, parseBasicCredentials, requestHeadProblem, type AbsoluteTarget } from '../protocol/http.js';
import type { DeviceConnector } from '../tunnel/connector.js';
import type { ListenerContext } from '../tunnel/listener.js';
import type { DeviceState } from '../tunnel/device-health.js';
import type { Authenticated, TunnelPipeline } from '../tunnel/pipeline.js';
import type { RoutedDevice } from '../tunnel/routes.js';
import type { UsageMeter, UsageRecorder } from '../tunnel/usage.js';
import type { ProxyDeps } from './deps.js';
import { AUTH_REQUIRED_TEXT, HTTP_FAILURES, KEY_STORE_TEXT, PROXY_AUTHENTICATE, REFUSAL_STATUS, refusalHeaders, userParameterHeaders } from './failures.js';

/** Idle pooled device connections are dropped after this; below the 5 s keep-alive most servers use. */
const FREE_SOCKET_TIMEOUT_MS = 4_000;
/** Agents without any socket are swept once there are more than this many. */
const AGENT_SWEEP_THRESHOLD = 256;
/**
 * Expect was answered by us (100 Continue after the key check), so it is not forwarded. Host is replaced by the
 * request target's authority (RFC 9112 3.2.2), so the device and the origin cannot be told two different hosts.
 */
const DROP_REQUEST = new Set(['expect', 'host']);
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE', 'TRACE']);

type ConnectionCallback = (err: Error | null, stream: Duplex) => void;

function openFor(connector: DeviceConnector, route: DeviceRoute, options: http.ClientRequestArgs, callback: ConnectionCallback): void {
  const opening = route.protocol === 'socks5' ? connector.open(route, { host: String(options.host), port: Number(options.port) }) : connector.openDevice(route);
  opening.then(
    (socket) => {
      // A pooled connection is idle between requests; if the device half-closes it then, it must close on
      // our side too, or the agent keeps it and writes the next request into a connection nobody answers.
      // (Tunnels keep allowHalfOpen: there a FIN ends one direction of a live stream.)
      socket.allowHalfOpen = false;
      callback(null, socket);
    },
    (err: Error) => callback(err, undefined as unknown as Duplex),
  );
}

/**
 * Keep-alive pool of connections to one device (HTTP device) or, through one device, to each target
 * (SOCKS5 device; the agent pools by target host:port). Used only for forwarded requests: CONNECT tunnels
 * always get a connection of their own.
 */
class DeviceAgent extends http.Agent {
  constructor(
    private readonly connector: DeviceConnector,
    private readonly route: DeviceRoute,
  ) {
    super({ keepAlive: true, timeout: FREE_SOCKET_TIMEOUT_MS, maxFreeSockets: 64, scheduling: 'lifo' });
  }

  override createConnection(options: http.ClientRequestArgs, callback?: ConnectionCallback): Duplex | null | undefined {
    openFor(this.connector, this.route, options, callback!);
    return undefined;
  }

  get idle(): boolean {
    return Object.keys(this.sockets).length === 0 && Object.keys(this.freeSockets).length === 0 && Object.keys(this.requests).length === 0;
  }

  get deviceIp(): string {
    return this.route.ip;
  }

  /** Closes the kept-alive connections, so no later request is written into one that leads to a dead device. */
  dropFree(): void {
    for (const list of Object.values(this.freeSockets)) for (const socket of list ?? []) socket.destroy();
  }
}

const NO_CREDENTIALS = { username: Buffer.alloc(0), password: Buffer.alloc(0) };

const kInflight = Symbol('tailgate.inflight');
// How far usage accounting has counted the client connection, each way: a keep-alive connection's bytes go to its
// requests in turn, each request's from where the one before it stopped (a refused one's are skipped).
const kUsageRead = Symbol('tailgate.usageRead');
const kUsageWritten = Symbol('tailgate.usageWritten');
// Set once an answer with Connection: close is written: requests the client pipelined behind it were parsed (and
// emitted) by Node already, but must not be served (RFC 9112 9.6), least of all after a head whose framing is in doubt.
const kClosing = Symbol('tailgate.closing');
type ClientSocket = Socket & { [kInflight]?: number; [kUsageRead]?: number; [kUsageWritten]?: number; [kClosing]?: boolean };

/** The client connection's bytes so far are no request's (a refused request): usage starts after them. */
function skipUsage(res: ServerResponse): void {
  const client = res.socket as ClientSocket | null;
  if (client === null) return;
  client[kUsageRead] = client.bytesRead;
  client[kUsageWritten] = client.bytesWritten;
}
const kForward = Symbol('tailgate.forward');
type Tagged<T> = T & { [kForward]?: Forward };

function sendError(res: ServerResponse, status: number, tag: string, text: string, closeConnection: boolean, extra?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (closeConnection) (res.req.socket as ClientSocket)[kClosing] = true;
  const body = `${text}\n`;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Tailgate-Error': tag,
    ...(closeConnection ? { Connection: 'close' } : {}),
    ...extra,
  });
  res.end(body);
}

/** An answer to a request that is not forwarded: its bytes are nobody's usage. */
function refuse(res: ServerResponse, status: number, tag: string, text: string, closeConnection: boolean, extra?: Record<string, string>): void {
  sendError(res, status, tag, text, closeConnection, extra);
  skipUsage(res);
}

function requestHasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

export class Forwarder {
  private readonly agents = new Map<string, DeviceAgent>();
  /** Requests sent to each device (by tailnet IP) whose answer has not begun: what a device going offline cuts. */
  private readonly awaiting = new Map<string, Set<Forward>>();
  private readonly unwatch: (() => void) | undefined;

  readonly pipeline: TunnelPipeline;

  constructor(
    readonly ctx: ListenerContext,
    readonly deps: ProxyDeps,
  ) {
    this.pipeline = deps.pipeline;
    this.unwatch = deps.tailnet?.onPeerOffline?.((ip) => this.deviceOffline(ip));
  }

  /** Whether a kept-alive connection to this device may be used: not when the tailnet reports the device offline. */
  mayReuse(route: DeviceRoute): boolean {
    return this.deps.tailnet?.peerOnline(route.ip) !== false;
  }

  awaitAnswer(ip: string, forward: Forward): void {
    let set = this.awaiting.get(ip);
    if (set === undefined) this.awaiting.set(ip, (set = new Set()));
    set.add(forward);
  }

  answered(ip: string, forward: Forward): void {
    const set = this.awaiting.get(ip);
    if (set === undefined || !set.delete(forward)) return;
    if (set.size === 0) this.awaiting.delete(ip);
  }

  /** The tailnet reports the device offline: its idle pooled connections go, and requests still waiting for its answer fail. */
  private deviceOffline(ip: string): void {
    for (const agent of this.agents.values()) if (agent.deviceIp === ip) agent.dropFree();
    const waiting = this.awaiting.get(ip);
    if (waiting === undefined) return;
    this.awaiting.delete(ip);
    for (const forward of waiting) forward.cut(new DialError('offline', `device ${ip} went offline while the request waited for its answer`));
  }

  handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    this.authorize(req, res, expectsContinue).catch((err: unknown) => {
      this.deps.log.error({ err }, 'forwarding failed');
      res.destroy();
    });
  }

  private async authorize(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
    const { ctx } = this;
    if ((req.socket as ClientSocket)[kClosing] === true) {
      res.destroy();
      return;
    }
    // Framing the device might read differently from us is refused before anything else, and the connection closed:
    // after such a head we cannot know where the next request would start.
    const head = requestHeadProblem(req.rawHeaders, req.httpVersion);
    if (head !== null) {
      refuse(res, head.status, head.tag, head.text, true);
      return;
    }
    const hasBody = requestHasBody(req);
    const url = req.url ?? '';
    const parsed = parseAbsoluteHttpUrl(url);
    if (parsed === null) {
      const text = url.startsWith('/')
        ? 'this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port'
        : /^https:\/\//i.test(url)
          ? 'only http:// URLs can be forwarded; use CONNECT for https'
          : 'request target is not a usable http:// URL';
      refuse(res, 400, 'bad-request', text, true);
      return;
    }
    const creds = parseBasicCredentials(req.headers['proxy-authorization']) ?? NO_CREDENTIALS;
    const auth = await this.pipeline.authenticate(ctx, creds.username, creds.password, req.socket.remoteAddress);
    if (!auth.ok) {
      // A throttled address's connection is closed: it has nothing more to try on it for the cool-down.
      if (auth.throttled !== undefined) refuse(res, REFUSAL_STATUS, auth.throttled.reason, auth.throttled.text, true, refusalHeaders(auth.throttled));
      else if (auth.storeDown) refuse(res, 503, 'key-store', KEY_STORE_TEXT, hasBody);
      else if (auth.parameter === undefined) refuse(res, 407, 'auth', AUTH_REQUIRED_TEXT, hasBody, { 'Proxy-Authenticate': PROXY_AUTHENTICATE });
      else refuse(res, 407, 'user-parameter', auth.parameter, hasBody, userParameterHeaders(auth.parameter));
      return;
    }
    let refusal = this.pipeline.admit(ctx, auth.route);
    if (refusal instanceof Promise) refusal = await refusal;
    if (refusal !== null) {
      refuse(res, REFUSAL_STATUS, refusal.reason, refusal.text, hasBody, refusalHeaders(refusal));
      return;
    }
    // Admitted: from here the request holds its place in its key's limits until Forward.finish() (or a return below).
    const route = this.pipeline.choose(ctx, auth.route, auth.params);
    if (route instanceof DialError) {
      this.pipeline.release(auth.route);
      const f = HTTP_FAILURES[route.reason];
      refuse(res, f.status, route.reason, f.text, hasBody);
      return;
    }
    if (res.destroyed || (req.socket as ClientSocket)[kClosing] === true) {
      this.pipeline.release(auth.route);
      if (!res.destroyed) res.destroy();
      return;
    }
    if (expectsContinue) res.writeContinue();
    new Forward(this, req, res, auth, route, parsed, hasBody).send(false);
  }

  agentFor(route: DeviceRoute): DeviceAgent {
    const id = `${route.protocol}|${route.ip}|${route.port}`;
    let agent = this.agents.get(id);
    if (agent === undefined) {
      if (this.agents.size >= AGENT_SWEEP_THRESHOLD) this.sweep();
      agent = new DeviceAgent(this.pipeline.connector, route);
      this.agents.set(id, agent);
    }
    return agent;
  }

  private sweep(): void {
    for (const [id, agent] of this.agents) {
      if (agent.idle) {
        agent.destroy();
        this.agents.delete(id);
      }
    }
  }

  close(): void {
    this.unwatch?.();
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }
}

/**
 * One forwarded request. Counted as a tunnel of the http listener while it is in flight; for usage, what crossed the
 * client connection for it (request and response, heads included).
 */
class Forward implements UsageMeter {
  private upstreamReq: Tagged<http.ClientRequest> | undefined;
  private upstreamSocket: Socket | undefined;
  private bytesBase = [0, 0];
  private bytes = [0, 0];
  private gotResponse = false;
  /** Registered with the forwarder as waiting for the device's answer. */
  private awaiting = false;
  private headerTimer: NodeJS.Timeout | undefined;
  private device: DeviceState | undefined;
  /** Devices this request was sent to, after a failover (the pipeline's failover needs them all). */
  private tried: RoutedDevice[] | undefined;
  /** A connection to the device (and through it, for SOCKS5 devices, to the target) was made. */
  private connected = false;
  private finished = false;
  private readonly startedAt = performance.now();

  constructor(
    private readonly forwarder: Forwarder,
    private readonly req: IncomingMessage,
    private readonly res: Tagged<ServerResponse>,
    private readonly auth: Authenticated,
    /** The device chosen for it, whose load and health it counts toward; another one after a failover. */
    private route: RoutedDevice,
    private readonly parsed: AbsoluteTarget,
    private readonly hasBody: boolean,
  ) {
    const { ctx } = forwarder;
    const board = ctx.parts.board;
    if (board !== undefined) {
      this.device = board.state(route.id);
      board.tunnelOpened(this.device);
    }
    const client = req.socket as ClientSocket;
    const inflight = client[kInflight] ?? 0;
    client[kInflight] = inflight + 1;
    if (inflight === 0) ctx.parts.tunnels.add(route.keyHash, client);
    ctx.tunnelsOpen.inc();
    ctx.tunnelsTotal.inc();
    const usage = ctx.parts.usage;
    if (usage !== undefined) {
      usage.opened(route.keyId, route.id);
      usage.add(this);
    }
    res[kForward] = this;
    res.on('close', onResponseClose);
    // Without a listener Node would destroy the client socket at server.timeout; with it, an idle
    // exchange ends in a 504 (or a cut, once the response has started) like an idle device does.
    res.on('timeout', onResponseTimeout);
  }

  /** `fresh`: bypass the pool (a retry after a pooled connection turned out to be dead). */
  send(fresh: boolean): void {
    const { forwarder, route, parsed, req } = this;
    if (!fresh && !forwarder.mayReuse(route)) fresh = true;
    const viaHttpDevice = route.protocol === 'http';
    const headers = endToEndHeaders(req.rawHeaders, DROP_REQUEST);
    headers.push('Host', parsed.authority);
    if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
    const connector = forwarder.pipeline.connector;
    const options: http.RequestOptions = {
      host: viaHttpDevice ? route.ip : parsed.target.host,
      port: viaHttpDevice ? route.port : parsed.target.port,
      method: req.method,
      path: viaHttpDevice ? `http://${parsed.authority}${parsed.path}` : parsed.path,
      headers,
      setHost: false,
    };
    if (fresh) {
      // No agent at all (not `agent: false`): with `false` Node makes a throw-away Agent that ignores createConnection
      // and dials the device itself with net.connect, bypassing the Dialer (and so the tailnet).
      options.createConnection = (opts, cb) => {
        openFor(connector, route, opts, cb);
        return undefined;
      };
    } else {
      options.agent = forwarder.agentFor(route);
    }
    let upstreamReq: Tagged<http.ClientRequest>;
    try {
      upstreamReq = http.request(options);
    } catch {
      // Node refuses header values it would not put on the wire; the client sent something unusable.
      this.fail(400, 'bad-request', 'request has headers that cannot be forwarded');
      return;
    }
    this.upstreamReq = upstreamReq;
    upstreamReq[kForward] = this;
    upstreamReq.setTimeout(forwarder.deps.timeouts.idleMs);
    upstreamReq.on('socket', onUpstreamSocket);
    upstreamReq.on('response', onUpstreamResponse);
    upstreamReq.on('error', onUpstreamError);
    upstreamReq.on('timeout', onUpstreamTimeout);
    upstreamReq.on('finish', onUpstreamFinish);
    if (!this.awaiting) {
      this.awaiting = true;
      forwarder.awaitAnswer(route.ip, this);
    }
    if (this.hasBody) req.pipe(upstreamReq);
    else upstreamReq.end();
  }

  socketAssigned(socket: Socket): void {
    this.upstreamSocket = socket;
    this.connected = true;
    this.bytesBase = [socket.bytesWritten, socket.bytesRead];
    if (!this.gotResponse) this.forwarder.ctx.setupSeconds.observe((performance.now() - this.startedAt) / 1000);
  }

  /** The whole request is on its way: from here the device has the response-header timeout to begin its answer. */
  requestSent(): void {
    if (this.gotResponse || this.finished) return;
    clearTimeout(this.headerTimer);
    this.headerTimer = setTimeout(onHeaderTimeout, this.forwarder.deps.timeouts.responseHeaderMs, this);
  }

  private stopWaiting(): void {
    clearTimeout(this.headerTimer);
    if (!this.awaiting) return;
    this.awaiting = false;
    this.forwarder.answered(this.route.ip, this);
  }

  /** Ends the exchange with `err` as its failure (a device gone offline, no answer in time). */
  cut(err: DialError): void {
    const { upstreamReq } = this;
    if (upstreamReq !== undefined && !upstreamReq.destroyed) upstreamReq.destroy(err);
    else this.error(err);
  }

  response(upstreamRes: IncomingMessage): void {
    this.gotResponse = true;
    this.stopWaiting();
    this.forwarder.pipeline.succeeded(this.route);
    const { res, route } = this;
    (upstreamRes as Tagged<IncomingMessage>)[kForward] = this;
    upstreamRes.on('end', onUpstreamEnd);
    if (route.protocol === 'http' && upstreamRes.statusCode === 407) {
      // The device's proxy wants credentials from *us*: the client's key was fine.
      upstreamRes.resume();
      this.fail(502, 'not-allowed', HTTP_FAILURES['not-allowed'].text);
      return;
    }
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, endToEndHeaders(upstreamRes.rawHeaders));
    upstreamRes.pipe(res);
  }

  error(err: Error): void {
    if (this.finished) return;
    clearTimeout(this.headerTimer);
    const { upstreamReq } = this;
    if (!this.gotResponse && upstreamReq?.reusedSocket && !this.hasBody && BODYLESS_METHODS.has(this.req.method ?? '')) {
      // A pooled connection the device closed while idle: safe to replay once on a new connection.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ECONNRESET' || code === 'EPIPE') {
        this.snapshotBytes();
        this.connected = false;
        this.send(true);
        return;
      }
    }
    this.stopWaiting();
    let e = err instanceof DialError ? err : new DialError('error', (err as NodeJS.ErrnoException).code ?? err.message);
    if (this.connected) this.forwarder.ctx.failed(this.route, e);
    else this.forwarder.ctx.dialFailed(this.route, e);
    if (err instanceof DialError) {
      const { pipeline } = this.forwarder;
      // Nothing reached the device yet, and without a body nothing of the client's is lost: another device may serve it.
      if (!this.connected && !this.gotResponse && !this.hasBody) {
        this.tried ??= [this.route];
        const next = pipeline.retry(this.auth.route, this.auth.params, this.tried, e, this.startedAt + pipeline.connector.connectTimeoutMs);
        if (!(next instanceof DialError)) {
          this.moveTo(next);
          this.send(true);
          return;
        }
        e = next;
      } else {
        pipeline.failed(this.route, e);
      }
    }
    const f = HTTP_FAILURES[e.reason];
    this.fail(f.status, e.reason, f.text);
  }

  private moveTo(next: RoutedDevice): void {
    this.tried!.push(next);
    const board = this.forwarder.ctx.parts.board;
    if (board !== undefined) {
      if (this.device !== undefined) board.tunnelClosed(this.device);
      this.device = board.state(next.id);
      board.tunnelOpened(this.device);
    }
    this.route = next;
  }

  /** No bytes either way for the idle timeout. */
  idle(): void {
    this.cut(new DialError('timeout', 'no bytes for the idle timeout'));
  }

  fail(status: number, tag: string, text: string): void {
    this.snapshotBytes();
    sendError(this.res, status, tag, text, this.hasBody);
  }

  snapshotBytes(): void {
    const s = this.upstreamSocket;
    if (s === undefined) return;
    this.bytes[0] += Math.max(0, s.bytesWritten - this.bytesBase[0]!);
    this.bytes[1] += Math.max(0, s.bytesRead - this.bytesBase[1]!);
    this.upstreamSocket = undefined;
  }

  reportUsage(recorder: UsageRecorder): void {
    const client = this.req.socket as ClientSocket;
    const read = client.bytesRead;
    const written = client.bytesWritten - client.writableLength;
    const up = read - (client[kUsageRead] ?? 0);
    const down = written - (client[kUsageWritten] ?? 0);
    client[kUsageRead] = read;
    client[kUsageWritten] = written;
    recorder.bytes(this.route.keyId, this.route.id, Math.max(0, up), Math.max(0, down));
  }

  /** The client-side response is over (sent, or the client went away). */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.forwarder.ctx.parts.usage?.end(this);
    this.stopWaiting();
    if (this.device !== undefined) this.forwarder.ctx.parts.board?.tunnelClosed(this.device);
    const { ctx } = this.forwarder;
    if (!this.res.writableFinished) this.upstreamReq?.destroy();
    this.snapshotBytes();
    ctx.bytesUp.inc(this.bytes[0]!);
    ctx.bytesDown.inc(this.bytes[1]!);
    this.auth.route.gate?.release();
    ctx.tunnelsOpen.dec();
    if (ctx.debug) {
      ctx.parts.log.debug(
        { listener: 'http', keyTag: keyTag(this.route.keyHash), node: this.route.nodeId, method: this.req.method, status: this.res.statusCode, up: this.bytes[0], down: this.bytes[1], ms: Math.round(performance.now() - this.startedAt), end: this.res.writableFinished ? 'done' : 'cut' },
        'request forwarded',
      );
    }
    const client = this.req.socket as ClientSocket;
    const left = (client[kInflight] ?? 1) - 1;
    client[kInflight] = left;
    if (left === 0) ctx.parts.tunnels.remove(this.route.keyHash, client);
  }
}

function onResponseClose(this: Tagged<ServerResponse>): void {
  this[kForward]!.finish();
}

function onResponseTimeout(this: Tagged<ServerResponse>): void {
  this[kForward]!.idle();
}

function onUpstreamSocket(this: Tagged<http.ClientRequest>, socket: Socket): void {
  this[kForward]!.socketAssigned(socket);
}

function onUpstreamResponse(this: Tagged<http.ClientRequest>, res: IncomingMessage): void {
  this[kForward]!.response(res);
}

function onUpstreamError(this: Tagged<http.ClientRequest>, err: Error): void {
  this[kForward]!.error(err);
}

function onUpstreamTimeout(this: Tagged<http.ClientRequest>): void {
  this[kForward]!.idle();
}

function onUpstreamFinish(this: Tagged<http.ClientRequest>): void {
  this[kForward]!.requestSent();
}

function onHeaderTimeout(forward: Forward): void {
  forward.cut(new DialError('timeout', 'the device did not begin its answer within the response-header timeout'));
}

function onUpstreamEnd(this: Tagged<IncomingMessage>): void {
  // The pooled socket may serve someone else from here on: take the byte counts now.
  this[kForward]!.snapshotBytes();
}
