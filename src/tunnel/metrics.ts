import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { FailureReason } from '../core/failure.js';
import type { DeviceStatusFeed } from './device-status.js';

export type ListenerName = 'http' | 'socks5';

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
  readonly failovers = new Counter({ name: 'tailgate_failovers_total', help: 'Connections moved to another device of their key after a device-level failure', registers: [this.registry] });
  readonly dialErrors = new Counter({ name: 'tailgate_device_dial_errors_total', help: 'Failed connections to devices by reason', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly setupSeconds = new Histogram({
    name: 'tailgate_tunnel_setup_seconds',
    help: 'From the client handshake completing to the tunnel being ready',
    labelNames: ['listener'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'tailgate_' });
  }

  /**
   * Exports the health and load of every device the gateway tracks, labelled by device name (bounded by the devices
   * registered; never a key). Read from the board at scrape time, so the data path pays nothing for them.
   */
  watchDevices(feed: DeviceStatusFeed): void {
    new Gauge({
      name: 'tailgate_device_up',
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

  dialError(reason: FailureReason): void {
    this.dialErrors.inc({ reason });
  }
}
