// The API's JSON bodies, fuzzed through Fastify's inject() on the real API: createApiServer with every plugin, its
// content-type parsers, depth check, body limit, schema validation and error handler, and the real binding services.
// Only the store is a stand-in, one that holds nothing and refuses every call with a BindingError: what is fuzzed is
// how a body is read and judged, not SQL, and inject() keeps a million inputs off the network and PostgreSQL. Oracles:
// every answer is a 4xx in the API's error shape (a valid body reaches the empty store and gets its 404) or a 2xx,
// never a 5xx; within a per-input time limit.
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { createApiServer } from '../../src/api/server.js';
import { BindingError } from '../../src/bindings/errors.js';
import { createBindingServices } from '../../src/bindings/index.js';
import { AddressAllowList, parseCidrList } from '../../src/core/cidr.js';
import type { NodeStore, RegistryStore } from '../../src/store/types.js';
import { KeyResolver } from '../../src/tunnel/key-resolver.js';
import { LiveStats } from '../../src/tunnel/live-stats.js';
import { Metrics } from '../../src/tunnel/metrics.js';
import { TunnelRegistry } from '../../src/tunnel/registry.js';
import { int, pick, randomIPv4, randomIPv6 } from '../helpers/random.js';
import { mutate, text, type Rng } from './mutate.js';
import { FuzzFinding, type FuzzTarget } from './targets.js';

const ADMIN = 'fuzz-admin-token-0123456789';

/** Method, path and fields of every route that takes a JSON body: most bodies use their route's fields, to get past the schema. */
const ROUTES: readonly [string, string, readonly string[]][] = [
  ['POST', '/register', ['key', 'ip', 'port', 'protocol', 'name']],
  ['POST', '/keys', ['name', 'device', 'pool', 'key', 'expiresAt', 'limits']],
  ['PATCH', '/keys/7', ['name', 'device', 'pool', 'expiresAt', 'disabled', 'limits']],
  ['POST', '/pools', ['name', 'devices', 'selector']],
  ['PATCH', '/pools/7', ['name', 'devices', 'selector']],
  ['PATCH', '/devices/7', ['name', 'labels', 'port', 'protocol', 'enabled']],
  ['POST', '/keys/7/rotate', []],
];

const CONTENT_TYPES = ['application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', '', 'application/json; charset=utf-16', 'application/octet-stream', 'multipart/form-data; boundary=x'];

const FIELDS = ['key', 'ip', 'port', 'protocol', 'name', 'labels', 'enabled', 'device', 'pool', 'expiresAt', 'disabled', 'devices', 'selector', 'limits', 'maxTunnels', 'tunnelsPerSecond', '__proto__', 'constructor', 'prototype', 'x'];

function scalar(r: Rng): unknown {
  switch (int(r, 12)) {
    case 0:
      return int(r, 70000);
    case 1:
      return pick(r, [-1, 0, 1.5, 1e308, -0, 2 ** 53 + 1, 65536]);
    case 2:
      return r() < 0.5;
    case 3:
      return null;
    case 4:
      return randomIPv4(r);
    case 5:
      return randomIPv6(r);
    case 6:
      return pick(r, ['http', 'socks5', 'HTTP', '', '::ffff:127.0.0.1', '2130706433', 'fe80::1%eth0', '2026-12-01T00:00:00Z', 'not a date']);
    case 7:
      return text(r, 'abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_', 0, 40);
    case 8:
      return 'x'.repeat(int(r, 400));
    case 9:
      return '\u0000\r\n\ud800\u202e';
    default:
      return text(r, 'abc123', 1, 24);
  }
}

function value(r: Rng, depth: number): unknown {
  if (depth > 3 && r() < 0.7) return scalar(r);
  switch (int(r, 5)) {
    case 0: {
      const o: Record<string, unknown> = {};
      for (let i = int(r, 5); i > 0; i--) o[r() < 0.8 ? pick(r, FIELDS) : text(r, 'abcxyz', 0, 10)] = value(r, depth + 1);
      return o;
    }
    case 1:
      return Array.from({ length: int(r, 4) }, () => value(r, depth + 1));
    default:
      return scalar(r);
  }
}

function body(r: Rng, fields: readonly string[]): string {
  const o: Record<string, unknown> = {};
  for (let i = 1 + int(r, 5); i > 0; i--) o[fields.length > 0 && r() < 0.85 ? pick(r, fields) : pick(r, FIELDS)] = depthBomb(r) ?? (r() < 0.6 ? scalar(r) : value(r, 1));
  let s = JSON.stringify(o);
  // JSON.stringify drops a "__proto__" own key set through assignment: write one into the text now and then.
  if (r() < 0.1) s = s.replace(/^\{/, '{"__proto__":{"isAdmin":true},');
  return s;
}

/** Now and then, nesting past MAX_JSON_DEPTH or near it. */
function depthBomb(r: Rng): unknown {
  if (r() > 0.03) return undefined;
  let v: unknown = scalar(r);
  for (let i = 20 + int(r, 40); i > 0; i--) v = r() < 0.5 ? [v] : { a: v };
  return v;
}

/** A store that holds nothing: every call is refused as a not-found, so a body that passes validation gets 404. */
function emptyStore(): NodeStore & RegistryStore {
  return new Proxy({} as NodeStore & RegistryStore, {
    get: (_t, name) => (name === 'then' ? undefined : () => Promise.reject(new BindingError('not-found', `id: the fuzz store holds nothing (${String(name)})`))),
  });
}

export async function createFuzzApi(): Promise<FastifyInstance> {
  const log = pino({ level: 'silent' }, new Writable({ write: (_c, _e, done) => done() }));
  const store = emptyStore();
  const metrics = new Metrics();
  const { bindings, registry } = createBindingServices({
    store,
    keyCache: new KeyResolver(store, { max: 10, positiveTtlMs: 0, negativeTtlMs: 0 }),
    tunnels: new TunnelRegistry(),
    allowList: new AddressAllowList(parseCidrList('100.64.0.0/10,fd7a:115c:a1e0::/48')),
    deviceDefaults: { port: 8939, protocol: 'http' },
    log,
  });
  const app = await createApiServer({ tokens: { admin: ADMIN, enroll: undefined }, store, bindings, registry, metrics, log, listening: () => true, stats: new LiveStats({ metrics }) });
  await app.ready();
  return app;
}

const TIME_LIMIT_MS = 2_000;

export function apiTarget(app: () => FastifyInstance): FuzzTarget {
  return {
    name: 'api-json',
    weight: 1,
    generate(r) {
      const route = int(r, ROUTES.length);
      const fields = ROUTES[route]![2];
      const base = Buffer.from(body(r, fields), 'utf8');
      const payload = r() < 0.6 ? base : mutate(r, base, Buffer.from(body(r, fields), 'utf8'), 2);
      return Buffer.concat([Buffer.from([route, r() < 0.8 ? 0 : int(r, CONTENT_TYPES.length)]), payload]);
    },
    async run(input) {
      if (input.length < 2) return;
      const [method, url] = ROUTES[input[0]! % ROUTES.length]!;
      const contentType = CONTENT_TYPES[input[1]! % CONTENT_TYPES.length]!;
      const headers: Record<string, string> = { authorization: `Bearer ${ADMIN}` };
      if (contentType !== '') headers['content-type'] = contentType;
      let timer: NodeJS.Timeout | undefined;
      const res = await Promise.race([
        app().inject({ method: method as 'POST', url, headers, payload: input.subarray(2) }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new FuzzFinding(`no answer within ${TIME_LIMIT_MS} ms`)), TIME_LIMIT_MS);
        }),
      ]).finally(() => clearTimeout(timer));
      if (res.statusCode >= 500) throw new FuzzFinding(`${method} ${url} answered ${res.statusCode}: ${res.body.slice(0, 300)}`);
      if (res.statusCode >= 400) {
        let json: { success?: unknown; message?: unknown; error?: unknown };
        try {
          json = JSON.parse(res.body) as typeof json;
        } catch {
          throw new FuzzFinding(`${method} ${url} ${res.statusCode} is not JSON: ${res.body.slice(0, 300)}`);
        }
        const shaped = json.success === false && typeof json.message === 'string' && json.message.length > 0 && typeof json.error === 'string';
        if (!shaped) throw new FuzzFinding(`${method} ${url} ${res.statusCode} not in the API's error shape: ${res.body.slice(0, 300)}`);
      }
    },
  };
}
