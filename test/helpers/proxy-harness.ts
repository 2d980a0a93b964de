// Both proxy listeners wired exactly as app.ts wires them, but with an in-memory RouteResolver: these
// tests are about the data plane (the full stack with PostgreSQL is tested through startGateway).
import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Timeouts } from '../../src/tunnel/types.js';
import type { Dialer } from '../../src/core/dialer.js';
import { hashKey } from '../../src/core/key.js';
import type { RoutedDevice, RouteResolver } from '../../src/tunnel/routes.js';
import type { Logger } from '../../src/log.js';
import { Metrics } from '../../src/tunnel/metrics.js';
import type { ProxyDeps } from '../../src/proxy/deps.js';
import { createHttpProxyServer } from '../../src/proxy/http-proxy.js';
import { createSocksServer } from '../../src/proxy/socks-proxy.js';
import { TunnelRegistry } from '../../src/tunnel/registry.js';
import { TunnelPipeline, type AdmissionPolicy } from '../../src/tunnel/pipeline.js';
import { DeviceConnector } from '../../src/tunnel/connector.js';
import { DirectDialer } from '../../src/tailnet/direct-dialer.js';
import type { TailnetState, TailnetView } from '../../src/tailnet/types.js';
import { closedPort, startHttpDevice, startSilentDevice, startSocksDevice, type Device } from './devices.js';
import { closeServer, listen, makeSelfSignedCert, startEchoTarget, startHttpsTarget, startHttpTarget, type EchoTarget, type Listening, type TlsMaterial } from './targets.js';
import { waitFor } from '../../testbed/wait.js';

export class MemoryResolver implements RouteResolver {
  private readonly routes = new Map<string, RoutedDevice>();
  private nextId = 1;
  lookups = 0;
  failing = false;

  bind(key: string, device: { ip: string; port: number; protocol?: 'http' | 'socks5' }): RoutedDevice {
    const id = this.nextId++;
    const route: RoutedDevice = { nodeId: id, keyId: id, gate: null, id, name: `device-${id}`, labels: {}, keyHash: hashKey(key), ip: device.ip, port: device.port, protocol: device.protocol ?? 'http' };
    this.routes.set(route.keyHash, route);
    return route;
  }

  async resolveHash(keyHash: string): Promise<RoutedDevice | null> {
    this.lookups++;
    if (this.failing) throw new Error('store is down');
    return this.routes.get(keyHash) ?? null;
  }
}

export interface Harness {
  deps: ProxyDeps;
  resolver: MemoryResolver;
  tunnels: TunnelRegistry;
  metrics: Metrics;
  httpServer: net.Server;
  socksServer: net.Server;
  httpPort: number;
  socksPort: number;
  /** Every log line written, as JSON text. */
  logLines: string[];
  /** Waits until neither listener holds a connection and no tunnel is registered; throws after timeoutMs. */
  settle(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A tailnet view with a fixed answer: tailscaled ready (or down for `unavailable`), peers online as `online` says.
 * It is the input of the data plane under test, standing in for the supervisor's snapshot.
 */
export function fixedTailnet(opts: { unavailable?: string; online?: (ip: string) => boolean | undefined } = {}): TailnetView {
  const state: TailnetState = { running: opts.unavailable === undefined, backendState: opts.unavailable === undefined ? 'Running' : 'Stopped', selfIps: [], ready: opts.unavailable === undefined };
  return { state: () => state, unavailableReason: () => opts.unavailable ?? null, peerOnline: opts.online ?? (() => undefined) };
}

export const TEST_TIMEOUTS: Timeouts = { handshakeMs: 600, connectMs: 700, responseHeaderMs: 700, idleMs: 20_000, shutdownGraceMs: 0 };

function connections(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

export async function startHarness(opts: { dialer?: Dialer; tailnet?: TailnetView; admission?: AdmissionPolicy[]; timeouts?: Partial<Timeouts>; maxHeaderBytes?: number } = {}): Promise<Harness> {
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  const log: Logger = pino({ level: 'debug', base: undefined }, sink);
  const timeouts = { ...TEST_TIMEOUTS, ...opts.timeouts };
  const resolver = new MemoryResolver();
  const tunnels = new TunnelRegistry();
  const metrics = new Metrics();
  const connector = new DeviceConnector(opts.dialer ?? new DirectDialer(), timeouts.connectMs, opts.tailnet);
  const pipeline = new TunnelPipeline({ resolver, connector, tunnels, metrics, log, timeouts, admission: opts.admission });
  const deps: ProxyDeps = { pipeline, tailnet: opts.tailnet, log, timeouts, maxHeaderBytes: opts.maxHeaderBytes ?? 16_384 };
  const httpServer = createHttpProxyServer(deps);
  const socksServer = createSocksServer(deps);
  const httpPort = await listen(httpServer, '127.0.0.1');
  const socksPort = await listen(socksServer, '127.0.0.1');
  return {
    deps,
    resolver,
    tunnels,
    metrics,
    httpServer,
    socksServer,
    httpPort,
    socksPort,
    logLines,
    settle: async (timeoutMs = 3_000) => {
      await waitFor(
        'proxy connections and tunnels to drain',
        timeoutMs,
        async () => tunnels.size === 0 && (await connections(httpServer)) === 0 && (await connections(socksServer)) === 0,
        20,
      );
    },
    close: async () => {
      tunnels.closeAll();
      await Promise.all([closeServer(httpServer), closeServer(socksServer)]);
    },
  };
}

export interface RawResult {
  data: Buffer;
  /** True if the server closed the connection (FIN or reset) before the deadline. */
  closed: boolean;
  ms: number;
}

/**
 * Writes `chunks` (with `gapMs` between them) to host:port and collects everything the server sends until
 * it closes, `until` says enough, or `timeoutMs` passes.
 */
export function rawExchange(port: number, chunks: Buffer[], opts: { timeoutMs?: number; gapMs?: number; until?: (data: Buffer) => boolean; end?: boolean } = {}): Promise<RawResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const got: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ data: Buffer.concat(got), closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 3_000);
    s.on('data', (c: Buffer) => {
      got.push(c);
      if (opts.until?.(Buffer.concat(got))) finish(false);
    });
    s.on('end', () => finish(true));
    s.on('error', () => finish(true));
    s.on('connect', async () => {
      for (let i = 0; i < chunks.length; i++) {
        if (i > 0 && opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
        if (s.destroyed) return;
        s.write(chunks[i]!);
      }
      if (opts.end) s.end();
    });
  });
}

/** Everything both listener test files run against: harness, devices, targets, and one key per device. */
export interface ProxyWorld {
  h: Harness;
  httpDevice: Device;
  socksDevice: Device;
  silentDevice: Device;
  web: Listening;
  web6: Listening;
  tlsWeb: Listening;
  tlsWeb6: Listening;
  echo: EchoTarget;
  tls: TlsMaterial;
  /** Keys bound to the HTTP device, the SOCKS5 device, a refusing port and the silent device. */
  keys: { http: string; socks: string; refused: string; silent: string };
  close(): Promise<void>;
}

export async function startProxyWorld(label: string, harness: Parameters<typeof startHarness>[0] = {}): Promise<ProxyWorld> {
  const tls = await makeSelfSignedCert();
  const [h, httpDevice, socksDevice, silentDevice, web, web6, tlsWeb, tlsWeb6, echo] = await Promise.all([
    startHarness(harness),
    startHttpDevice(),
    startSocksDevice(),
    startSilentDevice(),
    startHttpTarget('127.0.0.1'),
    startHttpTarget('::1'),
    startHttpsTarget(tls, '127.0.0.1'),
    startHttpsTarget(tls, '::1'),
    startEchoTarget('127.0.0.1'),
  ]);
  const keys = { http: `sk-${label}-http-device-0001`, socks: `sk-${label}-socks-device-0002`, refused: `sk-${label}-refused-0003`, silent: `sk-${label}-silent-0004` };
  h.resolver.bind(keys.http, { ip: '127.0.0.1', port: httpDevice.port });
  h.resolver.bind(keys.socks, { ip: '127.0.0.1', port: socksDevice.port, protocol: 'socks5' });
  h.resolver.bind(keys.refused, { ip: '127.0.0.1', port: await closedPort() });
  h.resolver.bind(keys.silent, { ip: '127.0.0.1', port: silentDevice.port });
  return {
    h,
    httpDevice,
    socksDevice,
    silentDevice,
    web,
    web6,
    tlsWeb,
    tlsWeb6,
    echo,
    tls,
    keys,
    close: async () => {
      await h.close();
      await Promise.all([httpDevice, socksDevice, silentDevice, web, web6, tlsWeb, tlsWeb6, echo].map((x) => x.close()));
      await tls.remove();
    },
  };
}
