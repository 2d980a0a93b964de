// Assembles a gateway from its parts. Everything is passed in, so tests build the same graph main.ts
// builds, against real PostgreSQL (or the embedded one) and a real device proxy.
import type { Server as NetServer } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { Metrics } from './tunnel/metrics.js';
import { AddressAllowList } from './core/cidr.js';
import { KeyResolver } from './tunnel/key-resolver.js';
import { DeviceConnector } from './tunnel/connector.js';
import { TunnelPipeline } from './tunnel/pipeline.js';
import { AuthThrottle } from './tunnel/auth-throttle.js';
import { LimitBook, type SharedAdmission } from './tunnel/limits.js';
import type { QuotaLedger } from './tunnel/quota.js';
import { adoptTunnels } from './tunnel/relay.js';
import { DeviceBoard } from './tunnel/device-health.js';
import { DeviceStatusFeed } from './tunnel/device-status.js';
import { DeviceSelector } from './tunnel/select.js';
import type { ProxyDeps } from './proxy/deps.js';
import { TunnelRegistry } from './tunnel/registry.js';
import { UsageRecorder } from './tunnel/usage.js';
import { LiveStats, type LiveTotals } from './tunnel/live-stats.js';
import { createHttpProxyServer, createHttpsProxyServer } from './proxy/http-proxy.js';
import { createSocksServer, createSocksTlsServer } from './proxy/socks-proxy.js';
import { AcceptGuard, connectionsPerListener, readDescriptorLimit } from './proxy/accept-guard.js';
import { CertificateWatcher, loadCertificatePair, type SecureContextTarget } from './tls/certificates.js';
import { createApiServer, type ProxyPorts } from './api/server.js';
import { createBindingServices } from './bindings/index.js';
import type { BindingService, KeyCache, TunnelCutter } from './bindings/service.js';
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
  /** This process's part in a gateway with worker processes (src/workers/); absent: the whole gateway runs here. */
  cluster?: PrimaryRole | WorkerRole | undefined;
}

/** The primary of a gateway with worker processes: the API, the store, the change feed. The workers listen. */
export interface PrimaryRole {
  role: 'primary';
  /** What the binding services act on instead of this process's key cache and tunnels: every worker's as well. */
  spread(local: { keyCache: KeyCache; tunnels: TunnelCutter }): { keyCache: KeyCache; tunnels: TunnelCutter };
  /** The change feed reconnected: every worker reads its keys with open tunnels again. */
  reconnected(): void;
  /** Whether the workers listen (readiness). */
  listening(): boolean;
  /** Settles once every worker has applied the key changes made so far; undefined when there are none outstanding. */
  keyChangesApplied(): Promise<unknown> | undefined;
  /** Where the workers listen. */
  ports: { http: number; socks: number; https?: number | undefined; socksTls?: number | undefined };
  /** What /metrics answers: this process's registry and every worker's, summed. */
  exposition(): Promise<string>;
  /** The workers' counts for /stats, summed. */
  liveTotals(): Promise<LiveTotals>;
}

/** A worker: the proxy listeners. Its API does not listen, and changes reach it from the primary. */
export interface WorkerRole {
  role: 'worker';
  /** Where keys' maxTunnels and tunnelsPerSecond are counted (the primary). */
  admission: SharedAdmission;
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
  /** The plain listeners; not listening when TAILGATE_PLAIN_LISTENERS is false. */
  httpProxy: NetServer;
  socksProxy: NetServer;
  /** The TLS listeners and the certificate they serve, when TLS is configured. */
  tls: { httpsProxy: TlsServer; socksProxy: TlsServer; certificates: CertificateWatcher } | undefined;
  /** The management API; undefined in a worker process (TAILGATE_WORKERS > 1), whose primary serves it. */
  api: FastifyInstance | undefined;
  /** Bound ports (useful when the config asked for port 0); http and socks are 0 when the plain listeners are off. */
  ports: { http: number; socks: number; api: number; https?: number; socksTls?: number };
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
  const primary = parts.cluster?.role === 'primary' ? parts.cluster : undefined;
  const worker = parts.cluster?.role === 'worker' ? parts.cluster : undefined;
  // TLS: the pair is checked before anything opens or listens, so a bad file stops start-up with the file named.
  const certificate = config.tls ? await loadCertificatePair(config.tls) : undefined;
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
    shared: worker?.admission,
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
  const httpsProxy = certificate ? createHttpsProxyServer(proxyDeps, certificate.secure) : undefined;
  const socksTlsProxy = certificate ? createSocksTlsServer(proxyDeps, certificate.secure) : undefined;
  const proxies: NetServer[] = [...(config.plainListeners ? [httpProxy, socksProxy] : []), ...(httpsProxy && socksTlsProxy ? [httpsProxy, socksTlsProxy] : [])];
  const descriptorLimit = parts.descriptorLimit ?? readDescriptorLimit();
  const maxConnections =
    config.maxConnections !== 'auto' ? config.maxConnections || undefined : descriptorLimit === undefined ? undefined : connectionsPerListener(descriptorLimit);
  new AcceptGuard(httpProxy, { listener: 'http', maxConnections, errors: metrics.acceptErrors, log });
  new AcceptGuard(socksProxy, { listener: 'socks5', maxConnections, errors: metrics.acceptErrors, log });
  if (httpsProxy) new AcceptGuard(httpsProxy, { listener: 'https', maxConnections, errors: metrics.acceptErrors, log });
  if (socksTlsProxy) new AcceptGuard(socksTlsProxy, { listener: 'socks5-tls', maxConnections, errors: metrics.acceptErrors, log });

  const shared = primary === undefined ? { keyCache: resolver, tunnels } : primary.spread({ keyCache: resolver, tunnels });
  const { bindings, registry } = createBindingServices({
    store,
    keyCache: shared.keyCache,
    tunnels: shared.tunnels,
    onReconnected: primary?.reconnected,
    allowList: new AddressAllowList(config.allowCidrs),
    deviceDefaults: config.deviceDefaults,
    registrar: parts.registrar,
    warmUp: parts.tailnet?.warmUp === undefined ? undefined : (ip) => void parts.tailnet!.warmUp!(ip),
    log,
  });
  const listening = primary?.listening ?? (() => proxies.every((server) => server.listening));
  const stats = new LiveStats({ metrics, usage, others: primary?.liveTotals });
  let proxyPorts: ProxyPorts | undefined;
  // A worker never serves the API (the primary does): building it there would compile every route's schemas again.
  const api = worker !== undefined ? undefined : await createApiServer({
    tokens: { admin: config.adminToken, enroll: config.enrollToken },
    store,
    bindings,
    registry,
    metrics,
    exposition: primary?.exposition,
    keyChangesApplied: primary?.keyChangesApplied,
    log,
    listening,
    tailnet: parts.tailnet,
    deviceStatus,
    quotaLedger,
    stats,
    listeners: () => proxyPorts,
    tls: config.tls?.api ? certificate?.secure : undefined,
  });

  let certificates: CertificateWatcher | undefined;
  if (config.tls && certificate && httpsProxy && socksTlsProxy) {
    const targets: SecureContextTarget[] = [httpsProxy, socksTlsProxy];
    if (config.tls.api && api) targets.push(api.server as unknown as SecureContextTarget);
    metrics.tlsNotAfter.set(Date.parse(certificate.info.notAfter) / 1000);
    certificates = new CertificateWatcher({
      files: config.tls,
      current: certificate,
      targets,
      log,
      onReload: (outcome) => {
        metrics.tlsReloads.inc({ result: outcome.ok ? 'loaded' : 'refused' });
        if (outcome.info) metrics.tlsNotAfter.set(Date.parse(outcome.info.notAfter) / 1000);
      },
    });
    log.info({ certificate: certificate.info, certFile: config.tls.certFile, api: config.tls.api }, 'TLS certificate loaded; following its files for renewals');
    // One look now closes the gap between the first read and the watch (a no-op when nothing changed).
    await certificates.reload();
  }

  // Other gateways on the same database announce their changes; the service applies them to this gateway's
  // key cache and tunnels.
  // A worker hears them from the primary (src/workers/), which follows them for all.
  if (worker === undefined) await bindings.followChanges();
  usage.start();
  stats.start();

  const ports: Gateway['ports'] =
    primary !== undefined
      ? { ...primary.ports, api: 0 }
      : {
          http: config.plainListeners ? await listen(httpProxy, config.httpPort, config.listenHost) : 0,
          socks: config.plainListeners ? await listen(socksProxy, config.socksPort, config.listenHost) : 0,
          api: 0,
        };
  if (primary === undefined && config.tls && httpsProxy && socksTlsProxy) {
    ports.https = await listen(httpsProxy, config.tls.httpsPort, config.listenHost);
    ports.socksTls = await listen(socksTlsProxy, config.tls.socksTlsPort, config.listenHost);
  }
  proxyPorts = {
    ...(config.plainListeners ? { http: ports.http, socks5: ports.socks } : {}),
    ...(ports.https === undefined ? {} : { https: ports.https, socks5Tls: ports.socksTls! }),
  };
  // A worker has no API (built above only when there is no worker), so past this point `api` is the primary's.
  if (worker !== undefined || api === undefined) {
    log.info({ http: ports.http, socks5: ports.socks, https: ports.https, socks5Tls: ports.socksTls, descriptorLimit, maxConnectionsPerListener: maxConnections }, 'worker listening');
    return assemble();
  }
  await api.listen({ port: config.apiPort, host: config.apiHost });
  const apiAddr = api.server.address();
  ports.api = typeof apiAddr === 'object' && apiAddr !== null ? apiAddr.port : config.apiPort;

  const where = (port: number | undefined) => (port === undefined || port === 0 ? 'off' : `${config.listenHost}:${port}`);
  log.info(
    {
      http: where(ports.http),
      socks5: where(ports.socks),
      https: where(ports.https),
      socks5Tls: where(ports.socksTls),
      api: `${config.tls?.api ? 'https' : 'http'}://${config.apiHost}:${ports.api}`,
      descriptorLimit,
      maxConnectionsPerListener: maxConnections,
    },
    'tailgate listening',
  );
  if (!config.adminToken) log.warn('TAILGATE_ADMIN_TOKEN is not set: the management API listens on loopback only and accepts unauthenticated calls there');

  return assemble();

  function assemble(): Gateway {
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        certificates?.close();
        const stopped = Promise.all([httpProxy, socksProxy, httpsProxy, socksTlsProxy].map((server) => (server ? closeServer(server) : undefined)));
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
        await api?.close();
        await bindings.close();
        deviceStatus.close();
        limits.close();
        if (!parts.store) await store.close();
      })();
      return closing;
    };

    const tls = certificates && httpsProxy && socksTlsProxy ? { httpsProxy: httpsProxy as unknown as TlsServer, socksProxy: socksTlsProxy, certificates } : undefined;
    return { config, store, resolver, tunnels, bindings, metrics, usage, limits, quotaLedger, httpProxy, socksProxy, tls, api, ports, close };
  }
}
