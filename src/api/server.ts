// The management API: registration, the node list, revocation, health, readiness and metrics.
// Built here, listened on by app.ts.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Config } from '../config.js';
import { RegistrarError, type DeviceRegistrar } from '../headscale/types.js';
import { keyTag, type Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { TunnelRegistry } from '../tunnel/registry.js';
import type { AddressAllowList } from '../routing/cidr.js';
import type { KeyResolver } from '../routing/key-resolver.js';
import type { NodeRecord, NodeStore } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import { TokenGate, type Access, type Caller } from './auth.js';
import { ApiError, describeFastifyClientError, describeValidationError } from './errors.js';
import { Registration, registrarApiError, type RegisterRequest } from './registration.js';

export interface ApiDeps {
  config: Config;
  store: NodeStore;
  resolver: KeyResolver;
  tunnels: TunnelRegistry;
  metrics: Metrics;
  log: Logger;
  allowList: AddressAllowList;
  /** True while both proxy listeners accept connections. */
  listening: () => boolean;
  tailnet?: TailnetView | undefined;
  registrar?: DeviceRegistrar | undefined;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    caller: Caller;
  }
}

/** What operators see of a binding: never the key, only the prefix of its hash that logs also show. */
export interface NodeView {
  id: number;
  name: string | null;
  ip: string;
  ipv6: string | null;
  port: number;
  protocol: string;
  keyPrefix: string;
  headscaleNodeId: string | null;
  /** From the tailnet status; null when unknown (no supervised tailscaled, or the peer is not in its netmap). */
  online: boolean | null;
  createdAt: string;
  updatedAt: string;
}

const READY_DB_TIMEOUT_MS = 2_000;
/** Error codes of `postgres` and the socket layer that mean the database cannot be reached right now. */
const DATABASE_DOWN_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'ETIMEDOUT',
  'EPIPE',
  'ENOENT',
]);
const MAX_NODE_ID = 2_147_483_647;

// Printable ASCII except ':' (the key is the Basic-auth username, and ':' ends a username).
const KEY_SCHEMA = { type: 'string', minLength: 8, maxLength: 256, pattern: '^[!-9;-~]+$' } as const;
const ID_PARAMS = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,9}$' } },
} as const;

const REGISTER_BODY = {
  type: 'object',
  required: ['key'],
  additionalProperties: false,
  properties: {
    key: KEY_SCHEMA,
    ip: { type: 'string', minLength: 1, maxLength: 64 },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    protocol: { type: 'string', enum: ['http', 'socks5'] },
    name: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[^\\x00-\\x1f\\x7f]+$' },
  },
} as const;

function parseId(raw: string): number {
  const id = Number(raw);
  if (id > MAX_NODE_ID) throw new ApiError(400, 'invalid_request', `params.id must be at most ${MAX_NODE_ID}`);
  return id;
}

export async function createApiServer(deps: ApiDeps): Promise<FastifyInstance> {
  const log = deps.log.child({ component: 'api' });
  const gate = new TokenGate(deps.config.adminToken, deps.config.enrollToken);
  const registration = new Registration({ ...deps, log });

  const app = Fastify({
    // Fastify's request logging writes the URL, and GET /registerV2/:key carries a key in it; requests are
    // logged below by route pattern instead.
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // Fastify's own handler logs the parser error object, whose rawPacket holds the request's header bytes
    // (Authorization included) at trace level.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const body = JSON.stringify(new ApiError(status, 'bad_http', `malformed HTTP request (${err.code ?? 'unknown'})`).body());
      log.debug({ code: err.code }, 'malformed HTTP request');
      if (socket.writable) {
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy();
    },
    bodyLimit: 16 * 1024,
    return503OnClosing: true,
    // GET /registerV2/:key carries keys of up to 256 characters in the path (the router's default is 100).
    routerOptions: { maxParamLength: 512 },
    ajv: {
      // Strict JSON: "8939" is not a port and an unknown field is a typo, not something to drop quietly.
      customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false },
    },
  });
  app.decorateRequest('caller', 'anonymous');
  // The original (gin's ShouldBindJSON) read JSON whatever the content type, and `curl -d '{...}'` sends
  // application/x-www-form-urlencoded: parse those as JSON too rather than break existing devices.
  app.addContentTypeParser(['application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));

  app.addHook('onRequest', async (request) => {
    request.caller = gate.authorize(request.headers.authorization, request.routeOptions.config.access ?? 'admin');
  });

  app.addHook('onSend', async (_request, reply) => {
    // Answers describe live bindings (and GET /registerV2/:key changes them): nothing along the way may cache.
    reply.header('cache-control', 'no-store');
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? '(no route)';
    if (request.routeOptions.config.access === 'open') return;
    log.debug({ method: request.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'api request');
  });

  app.setErrorHandler((err: FastifyError | ApiError, request, reply) => {
    if (err instanceof ApiError) return reply.code(err.status).send(err.body());
    if (err.validation !== undefined && err.validation.length > 0) {
      const message = describeValidationError(err.validationContext ?? 'body', err.validation[0]!);
      return reply.code(400).send(new ApiError(400, 'invalid_request', message).body());
    }
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      const status = err.statusCode;
      return reply.code(status).send(new ApiError(status, 'invalid_request', describeFastifyClientError(err.code, err.message)).body());
    }
    log.error({ err, route: request.routeOptions.url, method: request.method }, 'api request failed');
    const body = DATABASE_DOWN_CODES.has(err.code)
      ? new ApiError(503, 'database_unavailable', `database unavailable (${err.code})`)
      : new ApiError(500, 'internal', 'internal error (see the gateway log)');
    return reply.code(body.status).send(body.body());
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(new ApiError(404, 'not_found', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`).body());
  });

  const view = (node: NodeRecord): NodeView => ({
    id: node.id,
    name: node.name,
    ip: node.ip,
    ipv6: node.ipv6,
    port: node.port,
    protocol: node.protocol,
    keyPrefix: keyTag(node.keyHash),
    headscaleNodeId: node.headscaleNodeId,
    online: deps.tailnet?.peerOnline(node.ip) ?? null,
    createdAt: node.createdAt.toISOString(),
    updatedAt: node.updatedAt.toISOString(),
  });

  const register = async (req: RegisterRequest, caller: Caller, reply: FastifyReply) => {
    const { node, created, message } = await registration.register(req, caller);
    return reply.code(created ? 201 : 200).send({ success: true, message, ip: node.ip, node: view(node) });
  };

  app.post<{ Body: RegisterRequest }>('/register', { config: { access: 'enroll' }, schema: { body: REGISTER_BODY } }, (request, reply) =>
    register(request.body, request.caller, reply),
  );

  // For devices built against the original system: GET with the key in the path, same flow as POST /register {key}.
  app.get<{ Params: { key: string } }>(
    '/registerV2/:key',
    {
      config: { access: 'enroll' },
      // A HEAD would run the registration too.
      exposeHeadRoute: false,
      schema: { params: { type: 'object', required: ['key'], properties: { key: KEY_SCHEMA } } },
    },
    (request, reply) => register({ key: request.params.key }, request.caller, reply),
  );

  app.get('/nodes', { config: { access: 'admin' } }, async () => (await deps.store.list()).map(view));

  app.get<{ Params: { id: string } }>('/nodes/:id', { config: { access: 'admin' }, schema: { params: ID_PARAMS } }, async (request) => {
    const id = parseId(request.params.id);
    const node = await deps.store.get(id);
    if (node === null) throw new ApiError(404, 'not_found', `id: no node ${id}`);
    return view(node);
  });

  app.delete<{ Params: { id: string }; Querystring: { purge?: 'true' | 'false' | '1' | '0' } }>(
    '/nodes/:id',
    {
      config: { access: 'admin' },
      schema: {
        params: ID_PARAMS,
        querystring: { type: 'object', additionalProperties: false, properties: { purge: { type: 'string', enum: ['true', 'false', '1', '0'] } } },
      },
    },
    async (request) => {
      const id = parseId(request.params.id);
      const purge = request.query.purge === 'true' || request.query.purge === '1';
      if (purge && deps.registrar === undefined) throw new ApiError(400, 'purge_unavailable', 'purge: Headscale is not configured (HEADSCALE_URL)');
      const node = await deps.store.get(id);
      if (node === null) throw new ApiError(404, 'not_found', `id: no node ${id}`);

      // Headscale first: if it fails, nothing has changed yet and the same DELETE can simply be retried.
      let headscaleDeleted = false;
      if (purge && node.headscaleNodeId !== null) {
        try {
          await deps.registrar!.deleteNode(node.headscaleNodeId);
          headscaleDeleted = true;
        } catch (err) {
          // A node already gone from Headscale is what purge wants; anything else stops before the binding goes.
          if (!(err instanceof RegistrarError)) throw err;
          if (err.kind !== 'not-found') throw registrarApiError('purge', err);
        }
      }

      const removed = await deps.store.remove(id);
      if (removed === null) throw new ApiError(404, 'not_found', `id: no node ${id}`);
      deps.resolver.invalidate(removed.keyHash);
      const tunnelsClosed = deps.tunnels.closeKey(removed.keyHash);
      log.info({ keyPrefix: keyTag(removed.keyHash), nodeId: id, tunnelsClosed, headscaleDeleted }, 'key revoked');
      return {
        success: true,
        message: `revoked: key ${keyTag(removed.keyHash)}, ${tunnelsClosed} open tunnel(s) closed${headscaleDeleted ? ', node deleted in Headscale' : ''}`,
        node: view(removed),
        tunnelsClosed,
        headscaleDeleted,
      };
    },
  );

  app.get('/healthz', { config: { access: 'open' } }, async () => ({ status: 'ok' }));

  // One database probe at a time, however long it hangs: an orchestrator polling a stuck database must not
  // pile queries up behind it.
  let probe: Promise<string | null> | undefined;
  /** null when the database answered, else why not. */
  const databaseProblem = async (): Promise<string | null> => {
    probe ??= deps.store
      .ping()
      .then(
        () => null,
        (err: Error) => `unreachable: ${err.message}`,
      )
      .finally(() => (probe = undefined));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`timeout: no answer within ${READY_DB_TIMEOUT_MS} ms`), READY_DB_TIMEOUT_MS);
    });
    try {
      return await Promise.race([probe, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  app.get('/readyz', { config: { access: 'open' } }, async (request, reply) => {
    // Open for orchestrators, but only an operator sees why the database is down (addresses, errors).
    const caller = gate.identify(request.headers.authorization);
    const detailed = caller === 'admin' || caller === 'local';
    const problem = await databaseProblem();
    const database = problem === null ? 'ok' : detailed ? problem : problem.slice(0, problem.indexOf(':'));
    const listeners = deps.listening() ? 'ok' : 'not listening';
    let tailnet = 'not supervised';
    let tailnetReady = true;
    if (deps.tailnet !== undefined) {
      const state = deps.tailnet.state();
      tailnetReady = state.running;
      tailnet = state.running ? 'ok' : `not running (${state.backendState})`;
    }
    const ready = problem === null && listeners === 'ok' && tailnetReady;
    return reply.code(ready ? 200 : 503).send({ ready, database, listeners, tailnet });
  });

  app.get('/metrics', { config: { access: 'admin' } }, async (_request, reply) => {
    const text = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(text);
  });

  return app;
}
