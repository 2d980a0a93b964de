// The management API: Fastify with the options, hooks and error handling every route shares, and the routes as
// encapsulated plugins (probes, nodes, registration, devices, pools, keys, usage, stats, the OpenAPI document, the
// dashboard's files). Built here,
// listened on by app.ts.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { SecureContextOptions } from 'node:tls';
import swagger from '@fastify/swagger';
import Fastify, { LogController, errorCodes, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import { BindingError } from '../bindings/errors.js';
import type { RegistryService } from '../bindings/registry.js';
import type { BindingService } from '../bindings/service.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../tunnel/metrics.js';
import { StoreUnavailableError, isUnreachable } from '../store/index.js';
import type { NodeStore, RegistryStore } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import type { DeviceStatusFeed } from '../tunnel/device-status.js';
import type { LiveStats } from '../tunnel/live-stats.js';
import { TokenGate } from './auth.js';
import { ApiError, bindingApiError, describeFastifyClientError, describeValidationError } from './errors.js';
import { devices } from './devices.js';
import { jsonNestedDeeperThan, MAX_JSON_DEPTH } from './json-depth.js';
import { keys } from './keys.js';
import type { QuotaLedger } from '../tunnel/quota.js';
import { nodes } from './nodes.js';
import { openApiDocument, openApiOptions } from './openapi.js';
import { pools } from './pools.js';
import { Readiness, probes } from './probes.js';
import { registration } from './registration.js';
import { SHARED_SCHEMAS } from './schemas.js';
import { stats, type ProxyPorts } from './stats.js';
import { ui } from './ui.js';
import { usage } from './usage.js';

export type { ProxyPorts };

export interface ApiDeps {
  /** Bearer tokens: the admin's (every route), and the one that may only enroll devices. Unset: loopback callers only. */
  tokens: { admin: string | undefined; enroll: string | undefined };
  store: NodeStore & RegistryStore;
  bindings: BindingService;
  registry: RegistryService;
  metrics: Metrics;
  /** What /metrics answers instead of `metrics`' registry (a gateway with worker processes: their sum). */
  exposition?: (() => Promise<string>) | undefined;
  /**
   * A gateway with worker processes: settles once every worker has applied the key changes made so far (undefined:
   * none outstanding). Every answer waits for it, so a key registered, changed or revoked by a call acts that way on
   * any connection made after the answer, whichever worker accepts it.
   */
  keyChangesApplied?: (() => Promise<unknown> | undefined) | undefined;
  log: Logger;
  /** True while both proxy listeners accept connections. */
  listening: () => boolean;
  tailnet?: TailnetView | undefined;
  /** Live device health and load (the device board); absent, device health is what the tailnet says now. */
  deviceStatus?: DeviceStatusFeed | undefined;
  /** What key views show as a quota's use; absent: `used` is 0. */
  quotaLedger?: QuotaLedger | undefined;
  /** The sampler behind GET /stats. */
  stats: LiveStats;
  /** The proxy listeners' ports once they listen (shown by GET /stats). */
  listeners?: (() => ProxyPorts | undefined) | undefined;
  /** Serve the API over TLS with this certificate and key (TAILGATE_API_TLS); app.ts swaps it on renewal. */
  tls?: SecureContextOptions | undefined;
}

/** A route without a body schema takes no body. */
function takesNoBody(request: FastifyRequest): boolean {
  return request.routeOptions.schema?.body === undefined;
}

/** The request says it carries no body (the rule Fastify applies to a request without a content type). */
function announcesNoBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

export async function createApiServer(deps: ApiDeps): Promise<FastifyInstance> {
  const log = deps.log.child({ component: 'api' });
  const gate = new TokenGate(deps.tokens.admin, deps.tokens.enroll);

  // Typed as the plain instance: routes and hooks are the same on both, and only app.ts touches the server under it.
  const app = Fastify({
    ...(deps.tls === undefined ? {} : { https: deps.tls }),
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
  // A route that takes no body ignores an empty one whatever its content type: many HTTP client libraries send
  // Content-Type: application/json with every request, DELETE included.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser(['application/json', 'application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string' }, (request, body: string, done) => {
    if (body.length === 0 && takesNoBody(request)) return done(null, undefined);
    if (jsonNestedDeeperThan(body, MAX_JSON_DEPTH)) return done(new ApiError(400, 'invalid_request', `body: nested deeper than ${MAX_JSON_DEPTH} levels`), undefined);
    parseJson(request, body, done);
  });
  app.addContentTypeParser('*', (request, _payload, done) => {
    if (announcesNoBody(request) && takesNoBody(request)) return done(null, undefined);
    done(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE());
  });
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);

  app.addHook('onRequest', async (request) => {
    request.caller = gate.authorize(request.headers.authorization, request.routeOptions.config.access ?? 'admin');
  });

  const { keyChangesApplied } = deps;
  app.addHook('onSend', async (_request, reply) => {
    // Answers describe live bindings (and GET /registerV2/:key changes them): nothing along the way may cache. The
    // dashboard's files say for themselves how they may be cached.
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    if (keyChangesApplied !== undefined) await keyChangesApplied();
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? '(no route)';
    if (request.routeOptions.config.access === 'open') return;
    log.debug({ method: request.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'api request');
  });

  app.setErrorHandler((err: FastifyError | ApiError | BindingError, request, reply) => {
    if (err instanceof ApiError) return reply.code(err.status).send(err.body());
    if (err instanceof BindingError) {
      const answer = bindingApiError(err);
      return reply.code(answer.status).send(answer.body());
    }
    if (err.validation !== undefined && err.validation.length > 0) {
      const message = describeValidationError(err.validationContext ?? 'body', err.validation[0]!);
      return reply.code(400).send(new ApiError(400, 'invalid_request', message).body());
    }
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      const status = err.statusCode;
      return reply.code(status).send(new ApiError(status, 'invalid_request', describeFastifyClientError(err.code, err.message)).body());
    }
    if (isUnreachable(err)) {
      // The breaker has logged the outage once; one line per refused call would flood the log while it lasts.
      log.debug({ err: err.message, route: request.routeOptions.url, method: request.method }, 'api request refused: database unavailable');
      const reason = err instanceof StoreUnavailableError ? err.reason : err.code;
      return reply.code(503).send(new ApiError(503, 'database_unavailable', `database unavailable (${reason})`).body());
    }
    log.error({ err, route: request.routeOptions.url, method: request.method }, 'api request failed');
    return reply.code(500).send(new ApiError(500, 'internal', 'internal error (see the gateway log)').body());
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(new ApiError(404, 'not_found', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`).body());
  });

  // Registered before the routes: it collects them as they are added.
  await app.register(swagger, openApiOptions());
  await app.register(probes, { readiness: new Readiness(deps), metrics: deps.metrics, exposition: deps.exposition, gate });
  await app.register(nodes, { store: deps.store, bindings: deps.bindings, tailnet: deps.tailnet });
  await app.register(registration, { bindings: deps.bindings, tailnet: deps.tailnet });
  await app.register(devices, { store: deps.store, registry: deps.registry, tailnet: deps.tailnet, deviceStatus: deps.deviceStatus });
  await app.register(pools, { store: deps.store, registry: deps.registry, tailnet: deps.tailnet, deviceStatus: deps.deviceStatus });
  await app.register(keys, { store: deps.store, registry: deps.registry, quotaLedger: deps.quotaLedger });
  await app.register(usage, { store: deps.store });
  await app.register(stats, { store: deps.store, stats: deps.stats, tailnet: deps.tailnet, deviceStatus: deps.deviceStatus, listeners: deps.listeners });
  await app.register(ui);
  await app.register(openApiDocument);
  return app;
}
