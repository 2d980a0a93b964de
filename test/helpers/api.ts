// The management API over real HTTP for tests: started the way app.ts builds it (real store, key resolver, tunnel
// registry, binding and registry services), called with Node's fetch, and every answer to a documented route checked
// against the schema GET /openapi.json declares for its status.
import type { QuotaLedger } from '../../src/tunnel/quota.js';
import assert from 'node:assert/strict';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../src/log.js';
import { createApiServer } from '../../src/api/server.js';
import { createBindingServices } from '../../src/bindings/index.js';
import { loadConfig } from '../../src/config.js';
import { AddressAllowList } from '../../src/core/cidr.js';
import type { DeviceRegistrar } from '../../src/headscale/types.js';
import type { NodeStore, RegistryStore } from '../../src/store/types.js';
import type { PeerLink, TailnetState, TailnetView } from '../../src/tailnet/types.js';
import { DeviceBoard } from '../../src/tunnel/device-health.js';
import { DeviceStatusFeed } from '../../src/tunnel/device-status.js';
import { KeyResolver } from '../../src/tunnel/key-resolver.js';
import { LiveStats } from '../../src/tunnel/live-stats.js';
import { Metrics } from '../../src/tunnel/metrics.js';
import { TunnelRegistry } from '../../src/tunnel/registry.js';

/** A tailnet whose state and peers a test sets. */
export class FixedTailnet implements TailnetView {
  current: TailnetState = { running: true, backendState: 'Running', selfIps: ['100.64.0.1'], ready: true };
  readonly online = new Map<string, boolean>();
  readonly links = new Map<string, PeerLink>();
  state(): TailnetState {
    return this.current;
  }
  unavailableReason(): string | null {
    return this.current.running ? null : `tailscaled state ${this.current.backendState}`;
  }
  peerOnline(ip: string): boolean | undefined {
    return this.online.get(ip);
  }
  peerLink(ip: string): PeerLink | undefined {
    return this.links.get(ip);
  }
}

export interface Api {
  base: string;
  app: FastifyInstance;
  resolver: KeyResolver;
  tunnels: TunnelRegistry;
  /** The device board behind the devices' live state, as the pipeline would keep it. */
  deviceStatus: DeviceStatusFeed;
  setListening(up: boolean): void;
}

export async function startApi(
  env: Record<string, string>,
  store: NodeStore & RegistryStore,
  log: Logger,
  extra: { registrar?: DeviceRegistrar; tailnet?: TailnetView; quotaLedger?: QuotaLedger } = {},
): Promise<Api> {
  const config = loadConfig({ TAILGATE_DATA_DIR: '/unused', ...env });
  const deviceStatus = new DeviceStatusFeed(new DeviceBoard(), extra.tailnet);
  const resolver = new KeyResolver(store, config.keyCache, { track: (d) => deviceStatus.track(d) });
  const tunnels = new TunnelRegistry();
  let up = true;
  const metrics = new Metrics();
  const { bindings, registry } = createBindingServices({
    store,
    keyCache: resolver,
    tunnels,
    allowList: new AddressAllowList(config.allowCidrs),
    deviceDefaults: config.deviceDefaults,
    registrar: extra.registrar,
    log,
  });
  const app = await createApiServer({
    tokens: { admin: config.adminToken, enroll: config.enrollToken },
    store,
    bindings,
    registry,
    metrics,
    log,
    listening: () => up,
    tailnet: extra.tailnet,
    deviceStatus,
    quotaLedger: extra.quotaLedger,
    // No tunnels run here: the sampler is never started, and /stats answers an empty series.
    stats: new LiveStats({ metrics }),
  });
  assert.equal(app.server.listening, false, 'createApiServer must leave listening to the caller');
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return { base: `http://127.0.0.1:${addr.port}`, app, resolver, tunnels, deviceStatus, setListening: (v) => (up = v) };
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

export interface CallOptions {
  /** Bearer token; null sends none. */
  token?: string | null;
  body?: unknown;
  raw?: string;
  contentType?: string;
  authorization?: string;
}

const pointer = (...segments: string[]) => segments.map((s) => encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/');

/** Checks answers against the OpenAPI document the API serves, and remembers which route and status it checked. */
export class DocumentChecker {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  document: any;
  /** "METHOD /template STATUS" of every answer checked against the document. */
  readonly checked = new Set<string>();
  private readonly ajv = new Ajv2020({ strict: true, allErrors: true });

  constructor() {
    addFormats.default(this.ajv);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  load(document: any): void {
    this.document = document;
    // The document's own fields (openapi, info, paths, components) are not JSON Schema keywords; declared as such, the
    // whole document can be added and its response schemas, with their $refs into components, compiled in place.
    this.ajv.addVocabulary(Object.keys(document));
    this.ajv.addSchema(document, 'openapi.json');
  }

  /** The documented route a request went to, if any (a path no route serves gets the not-found handler). */
  route(method: string, path: string): string | undefined {
    const pathname = path.split('?')[0]!;
    return Object.keys(this.document.paths).find(
      (template) =>
        this.document.paths[template][method.toLowerCase()] !== undefined &&
        new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`).test(pathname),
    );
  }

  /** The answer's status must be declared for its route, and its body must match the schema declared for that status. */
  check(method: string, path: string, a: Answer): void {
    if (this.document === undefined) return;
    const template = this.route(method, path);
    if (template === undefined) return;
    const where = `${method} ${template} ${a.status}`;
    const response = this.document.paths[template][method.toLowerCase()].responses[String(a.status)];
    assert.ok(response, `${where}: the status is not declared in /openapi.json (${a.text})`);
    const mediaType = (a.headers.get('content-type') ?? '').split(';')[0]!.trim();
    assert.ok(response.content?.[mediaType], `${where}: /openapi.json declares no ${mediaType} answer`);
    const validate = this.ajv.getSchema(
      `openapi.json#/${pointer('paths', template, method.toLowerCase(), 'responses', String(a.status), 'content', mediaType, 'schema')}`,
    ) as ValidateFunction;
    const body = mediaType === 'application/json' ? a.json : a.text;
    assert.ok(validate(body), `${where}: the answer does not match its schema in /openapi.json: ${this.ajv.errorsText(validate.errors)}\n${a.text}`);
    this.checked.add(where);
  }

  /** Every documented route that `owns` selects had a success and an error answer checked. */
  assertCovered(owns: (path: string) => boolean, noErrorAnswer: ReadonlySet<string> = new Set()): void {
    for (const [path, item] of Object.entries(this.document.paths)) {
      if (!owns(path)) continue;
      for (const method of Object.keys(item as object)) {
        const seen = [...this.checked].filter((c) => c.startsWith(`${method.toUpperCase()} ${path} `)).map((c) => Number(c.split(' ')[2]));
        assert.ok(seen.some((status) => status < 300), `no successful answer of ${method} ${path} was checked`);
        if (!noErrorAnswer.has(path)) assert.ok(seen.some((status) => status >= 400), `no error answer of ${method} ${path} was checked`);
      }
    }
  }
}

/** One request with the admin token unless told otherwise; the answer is checked against the document. */
export async function callApi(api: Api, checker: DocumentChecker, adminToken: string, method: string, path: string, opts: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? adminToken : opts.token;
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  else if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  const res = await fetch(api.base + path, { method, headers, body, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const answer = { status: res.status, headers: res.headers, text, json };
  checker.check(method, path, answer);
  return answer;
}

export function assertError(a: Answer, status: number, code: string, message: RegExp): void {
  assert.equal(a.status, status, a.text);
  assert.equal(a.json?.success, false, a.text);
  assert.equal(a.json?.error, code, a.text);
  assert.match(a.json?.message, message);
}
