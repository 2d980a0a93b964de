import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { FailureReason } from '../core/failure.js';
import type { DeviceStatusFeed } from './device-status.js';
import type { UsageRecorder } from './usage.js';

/** The TLS listeners (`https`, `socks5-tls`) run the same front ends under their own label. */
export type ListenerName = 'http' | 'socks5' | 'https' | 'socks5-tls';

/**
 * All Prometheus series tailgate exports, in one registry owned by the app (no global default registry,
 * so two gateways in one test process do not collide). No label ever carries a key or key hash.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly tunnelsOpen = new Gauge({ name: 'tailgate_tunnels_open', help: 'Tunnels currently open', labelNames: ['listener'] as const, registers: [this.registry] });
  readonly tunnelsTotal = new Counter({ name: 'tailgate_tunnels_total', help: 'Tunnels established', labelNames: ['listener'] as const, registers: [this.registry] });
  readonly bytes = new Counter({
    name: 'tailgate_bytes_total',
    help: 'Bytes relayed; upstream = client to device, downstream = device to client',
    labelNames: ['listener', 'direction'] as const,
    registers: [this.registry],
  });
  readonly authFailures = new Counter({ name: 'tailgate_auth_failures_total', help: 'Rejected proxy credentials', labelNames: ['listener'] as const, registers: [this.registry] });
  readonly authThrottled = new Counter({
    name: 'tailgate_auth_throttled_total',
    help: 'Proxy authentications refused without a lookup: the client address failed too often (TAILGATE_AUTH_FAILURES_PER_MINUTE)',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly acceptErrors = new Counter({
    name: 'tailgate_accept_errors_total',
    help: 'Client connections a proxy listener could not take: code fd_budget = over its share of the descriptor limit, paused = during the pause after an accept error (both closed at once), else the errno of a failed accept',
    labelNames: ['listener', 'code'] as const,
    registers: [this.registry],
  });
  readonly failovers = new Counter({ name: 'tailgate_failovers_total', help: 'Connections moved to another device of their key after a device-level failure', registers: [this.registry] });
  readonly limitRefusals = new Counter({
    name: 'tailgate_limit_refusals_total',
    help: "Tunnels and forwarded requests refused by their key's limits: tunnel-limit, rate-limit, quota_exceeded",
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly dialErrors = new Counter({ name: 'tailgate_device_dial_errors_total', help: 'Failed connections to devices by reason', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly setupSeconds = new Histogram({
    name: 'tailgate_tunnel_setup_seconds',
    help: 'From the client handshake completing to the tunnel being ready',
    labelNames: ['listener'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor() {
    // prom-client's default samples the event loop's delay with a 10 ms timer: 100 wake-ups a second, idle or not, a
    // cost that weighs most where a GiB takes long, on the tailnet (bench/README.md, "The tailnet path"). Ten samples a
    // second still see every stall.
    collectDefaultMetrics({ register: this.registry, prefix: 'tailgate_', eventLoopMonitoringPrecision: 100 });
  }

  /**
   * Exports the health and load of every device the gateway tracks, labelled by device name (bounded by the devices
   * registered; never a key). Read from the board at scrape time, so the data path pays nothing for them.
   */
  watchDevices(feed: DeviceStatusFeed): void {
    new Gauge({
      name: 'tailgate_device_up',
      // Summed over worker processes (src/workers/), 1 would read as 2; down in any process is down.
      aggregator: 'min',
      help: 'Whether the device may carry new tunnels: 1 up or not known to be down, 0 down (disabled, offline, or its breaker open)',
      labelNames: ['device'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [id, name] of feed.names) this.set({ device: name }, feed.board.view(id).health === 'down' ? 0 : 1);
      },
    });
    new Gauge({
      name: 'tailgate_device_tunnels_open',
      help: 'Tunnels and forwarded requests open through the device, from every key',
      labelNames: ['device'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [id, name] of feed.names) this.set({ device: name }, feed.board.view(id).openTunnels);
      },
    });
  }

  /**
   * Bytes per device (and per key, by key name, only when asked: one series per key is a cardinality an operator must
   * choose), from the usage recorder at scrape time: open tunnels are sampled then, nothing is counted per chunk.
   * Client-side bytes, as billed: up = from the client, down = to the client.
   */
  watchUsage(usage: UsageRecorder, deviceNames: ReadonlyMap<number, string>, keyNames: ReadonlyMap<number, string | null> | undefined): void {
    this.bytesCounter('tailgate_device_bytes_total', 'Bytes carried through the device, from every key', 'device', usage, usage.deviceBytes, (id) =>
      id === 0 ? undefined : (deviceNames.get(id) ?? String(id)),
    );
    new Counter({
      name: 'tailgate_usage_dropped_total',
      help: 'Usage not accounted because TAILGATE_USAGE_MAX_CELLS was reached while the database was unavailable',
      labelNames: ['what'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc({ what: 'bytes' }, usage.droppedBytes);
        this.inc({ what: 'events' }, usage.droppedEvents);
      },
    });
    new Gauge({
      name: 'tailgate_usage_unwritten_cells',
      help: 'Usage buckets held in memory, not yet written to the database',
      registers: [this.registry],
      collect() {
        this.set(usage.held);
      },
    });
    if (keyNames === undefined) return;
    usage.keepKeyBytes = true;
    this.bytesCounter('tailgate_key_bytes_total', 'Bytes carried for the key (labelled by key name, or id when it has none)', 'key', usage, usage.keyBytes, (id) =>
      keyNames.get(id) ?? String(id),
    );
  }

  /** A bytes counter per `label`, read from `totals` at scrape time; `nameOf` undefined leaves an id out. */
  private bytesCounter(name: string, help: string, label: 'device' | 'key', usage: UsageRecorder, totals: ReadonlyMap<number, readonly [number, number]>, nameOf: (id: number) => string | undefined): void {
    new Counter({
      name,
      help: `${help}; up = from the client, down = to the client`,
      labelNames: [label, 'direction'],
      registers: [this.registry],
      collect() {
        usage.sample();
        this.reset();
        for (const [id, [up, down]] of totals) {
          const value = nameOf(id);
          if (value === undefined) continue;
          this.inc({ [label]: value, direction: 'up' }, up);
          this.inc({ [label]: value, direction: 'down' }, down);
        }
      },
    });
  }

  /** TLS certificate reloads by result (`loaded`, `refused`), and the served certificate's expiry for alerting. */
  readonly tlsReloads = new Counter({ name: 'tailgate_tls_reloads_total', help: 'TLS certificate file changes: loaded, or refused (the previous certificate kept)', labelNames: ['result'] as const, registers: [this.registry] });
  readonly tlsNotAfter = new Gauge({
    name: 'tailgate_tls_certificate_not_after_seconds',
    help: "The served TLS certificate's notAfter, as a Unix time",
    // Every process serves the same files; the earliest is what expires first.
    aggregator: 'min',
    registers: [this.registry],
  });

  dialError(reason: FailureReason): void {
    this.dialErrors.inc({ reason });
  }
}
