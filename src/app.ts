// Assembles a gateway from its parts. Everything is passed in, so tests build the same graph main.ts
// builds, against real PostgreSQL (or the embedded one) and a real device proxy.
import type { Server as NetServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { Metrics } from './tunnel/metrics.js';
import { AddressAllowList } from './core/cidr.js';
import { KeyResolver } from './tunnel/key-resolver.js';
import { DeviceConnector } from './tunnel/connector.js';
import { TunnelPipeline } from './tunnel/pipeline.js';
import { AuthThrottle } from './tunnel/auth-throttle.js';
import { LimitBook } from './tunnel/limits.js';
import type { QuotaLedger } from './tunnel/quota.js';
import { adoptTunnels } from './tunnel/relay.js';
import { DeviceBoard } from './tunnel/device-health.js';
import { DeviceStatusFeed } from './tunnel/device-status.js';
import { DeviceSelector } from './tunnel/select.js';
import type { ProxyDeps } from './proxy/deps.js';
import { TunnelRegistry } from './tunnel/registry.js';
import { UsageRecorder } from './tunnel/usage.js';
import { LiveStats } from './tunnel/live-stats.js';
import { createHttpProxyServer } from './proxy/http-proxy.js';
import { createSocksServer } from './proxy/socks-proxy.js';
import { AcceptGuard, connectionsPerListener, readDescriptorLimit } from './proxy/accept-guard.js';
import { createApiServer } from './api/server.js';
import { createBindingServices } from './bindings/index.js';
import type { BindingService } from './bindings/service.js';
import { openStore } from './store/index.js';
import type { NodeStore, RegistryStore } from './store/types.js';
import type { Dialer } from './core/dialer.js';
import { DirectDialer } from './tailnet/direct-dialer.js';
import type { TailnetView } from './tailnet/types.js';
import type { DeviceRegistrar } from './headscale/types.js';

export interface GatewayParts {
  /** Defaults to the kernel's stack (host already on the tailnet). */
  dialer?: Dialer;
  tailnet?: TailnetView;
  registrar?: DeviceRegistrar;
  /** Defaults to opening the store the config names. */
  store?: NodeStore & RegistryStore;
  /** What quotas are checked against. Default: the usage recorder (the database's totals plus unwritten bytes). */
  quotaLedger?: QuotaLedger;
  /** The descriptor limit the proxy listeners' connection caps come from. Default: this process's RLIMIT_NOFILE. */
  descriptorLimit?: number | undefined;
}

export interface Gateway {
  config: Config;
  store: NodeStore & RegistryStore;
  resolver: KeyResolver;
  tunnels: TunnelRegistry;
  bindings: BindingService;
  metrics: Metrics;
  /** Usage accounting (also the quota ledger). */
  usage: UsageRecorder;
  limits: LimitBook;
  quotaLedger: QuotaLedger;
  httpProxy: NetServer;
  socksProxy: NetServer;
  api: FastifyInstance;
  /** Bound ports (useful when the config asked for port 0). */
  ports: { http: number; socks: number; api: number };
  /** Stops accepting, lets tunnels drain for the grace period, then cuts them, writes the last usage and closes the store. */
  close(): Promise<void>;
}

function listen(server: NetServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ port, host }, () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
    });
  });
}

function closeServer(server: NetServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

export async function startGateway(config: Config, log: Logger, parts: GatewayParts = {}): Promise<Gateway> {
  const store = parts.store ?? (await openStore({ database: config.database, dataDir: config.dataDir, log, timeoutMs: config.databaseTimeoutMs }));
  const metrics = new Metrics();
  const tunnels = new TunnelRegistry();
  // Pool keys: one board of every device's health and load, and the chooser that reads it.
  const board = new DeviceBoard();
  const selector = new DeviceSelector(board);
  // Every device a key resolves to is followed in the tailnet from then on; at start, every device registered.
  const deviceStatus = new DeviceStatusFeed(board, parts.tailnet);
  for (const d of await store.listDevices()) deviceStatus.track({ id: d.id, name: d.name ?? String(d.id), ip: d.ip });
  metrics.watchDevices(deviceStatus);
  const usage = new UsageRecorder({ store, log, flushMs: config.usage.flushMs, maxCells: config.usage.maxCells });
  metrics.watchUsage(usage, deviceStatus.names, config.metricsKeyLabels ? usage.keyNames : undefined);
  // Quotas are checked against usage accounting: every gateway's bytes through the database, plus this gateway's
  // bytes not yet written (open tunnels as of the last sample).
  const quotaLedger: QuotaLedger = parts.quotaLedger ?? usage;
  const limits = new LimitBook({
    ledger: quotaLedger,
    refusals: metrics.limitRefusals,
    quotaCheckMs: config.quotaCheckMs,
    adopt: (keyHash, gate) => adoptTunnels(tunnels.of(keyHash), gate),
    sample: (t) => t.reportUsage(usage),
    onQuotaCut: (keyId, n) => log.info({ keyId, tunnels: n, reason: 'quota_exceeded' }, "closed the key's open tunnels: its quota is used up"),
  });
  const resolver = new KeyResolver(store, config.keyCache, {
    prepare: (members) => selector.prepare(members),
    track: (d) => deviceStatus.track(d),
    limits,
    refreshOpen: (keyHash) => tunnels.has(keyHash),
  });
  const dialer = parts.dialer ?? new DirectDialer();
  const connector = new DeviceConnector(dialer, config.timeouts.connectMs, parts.tailnet);
  const { failuresPerMinute, cooldownMs } = config.authThrottle;
  const authThrottle =
    failuresPerMinute === 0
      ? undefined
      : new AuthThrottle({
          failuresPerMinute,
          cooldownMs,
          onThrottle: (address, failures, ms) =>
            log.warn({ address, failures, cooldownMs: ms }, 'client address throttled: too many failed proxy authentications, refused without lookup for the cool-down'),
        });
  const pipeline = new TunnelPipeline({ resolver, connector, tunnels, metrics, log, timeouts: config.timeouts, board, selector, usage, authThrottle });
  const proxyDeps: ProxyDeps = { pipeline, tailnet: parts.tailnet, log, timeouts: config.timeouts, maxHeaderBytes: config.maxHeaderBytes };
  const httpProxy = createHttpProxyServer(proxyDeps);
  const socksProxy = createSocksServer(proxyDeps);
  const descriptorLimit = parts.descriptorLimit ?? readDescriptorLimit();
  const maxConnections =
    config.maxConnections !== 'auto' ? config.maxConnections || undefined : descriptorLimit === undefined ? undefined : connectionsPerListener(descriptorLimit);
  new AcceptGuard(httpProxy, { listener: 'http', maxConnections, errors: metrics.acceptErrors, log });
  new AcceptGuard(socksProxy, { listener: 'socks5', maxConnections, errors: metrics.acceptErrors, log });

  const { bindings, registry } = createBindingServices({
    store,
    keyCache: resolver,
    tunnels,
    allowList: new AddressAllowList(config.allowCidrs),
    deviceDefaults: config.deviceDefaults,
    registrar: parts.registrar,
    warmUp: parts.tailnet?.warmUp === undefined ? undefined : (ip) => void parts.tailnet!.warmUp!(ip),
    log,
  });
  const listening = () => httpProxy.listening && socksProxy.listening;
  const stats = new LiveStats({ metrics, usage });
  let proxyPorts: { http: number; socks5: number } | undefined;
  const api = await createApiServer({
    tokens: { admin: config.adminToken, enroll: config.enrollToken },
    store,
    bindings,
    registry,
    metrics,
    log,
    listening,
    tailnet: parts.tailnet,
    deviceStatus,
    quotaLedger,
    stats,
    listeners: () => proxyPorts,
  });

  // Other gateways on the same database announce their changes; the service applies them to this gateway's
  // key cache and tunnels.
  await bindings.followChanges();
  usage.start();
  stats.start();

  const ports = {
    http: await listen(httpProxy, config.httpPort, config.listenHost),
    socks: await listen(socksProxy, config.socksPort, config.listenHost),
    api: 0,
  };
  proxyPorts = { http: ports.http, socks5: ports.socks };
  await api.listen({ port: config.apiPort, host: config.apiHost });
  const apiAddr = api.server.address();
  ports.api = typeof apiAddr === 'object' && apiAddr !== null ? apiAddr.port : config.apiPort;

  log.info({ http: `${config.listenHost}:${ports.http}`, socks5: `${config.listenHost}:${ports.socks}`, api: `${config.apiHost}:${ports.api}`, descriptorLimit, maxConnectionsPerListener: maxConnections }, 'tailgate listening');
  if (!config.adminToken) log.warn('TAILGATE_ADMIN_TOKEN is not set: the management API listens on loopback only and accepts unauthenticated calls there');

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const stopped = Promise.all([closeServer(httpProxy), closeServer(socksProxy)]);
      stats.close();
      const deadline = Date.now() + config.timeouts.shutdownGraceMs;
      while (tunnels.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const cut = tunnels.closeAll();
      if (cut > 0) log.info({ tunnels: cut }, 'grace period over, closed remaining tunnels');
      // Cut tunnels report their last bytes from their close handlers, a tick or two later; whatever is still open
      // after this is counted as it stands by the last flush.
      const cutBy = Date.now() + 1_000;
      while (usage.openMeters > 0 && Date.now() < cutBy) await new Promise((r) => setTimeout(r, 10));
      await stopped;
      await usage.close();
      await api.close();
      await bindings.close();
      deviceStatus.close();
      limits.close();
      if (!parts.store) await store.close();
    })();
    return closing;
  };

  return { config, store, resolver, tunnels, bindings, metrics, usage, limits, quotaLedger, httpProxy, socksProxy, api, ports, close };
}
