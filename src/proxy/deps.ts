import type { Timeouts } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { DeviceConnector } from '../routing/device-connector.js';
import type { RouteResolver } from '../core/route.js';
import type { TailnetView } from '../tailnet/types.js';
import type { TunnelRegistry } from '../tunnel/registry.js';

/** What both proxy listeners need; app.ts builds one and hands it to both. */
export interface ProxyDeps {
  resolver: RouteResolver;
  connector: DeviceConnector;
  tunnels: TunnelRegistry;
  /** The supervised tailscaled's view, when there is one: peers reported offline are not reused from the pool. */
  tailnet?: TailnetView | undefined;
  metrics: Metrics;
  log: Logger;
  timeouts: Timeouts;
  /** Largest HTTP request head the HTTP proxy accepts; larger ones get 431. */
  maxHeaderBytes: number;
}
