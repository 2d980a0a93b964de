// What the dashboard's overview shows live: devices by health, open tunnels, and the gateway's last minutes of tunnel
// and byte rates from the sampler (src/tunnel/live-stats.ts).
import type { FastifyPluginAsync } from 'fastify';
import type { RegistryStore } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import type { DeviceStatusFeed } from '../tunnel/device-status.js';
import type { LiveStats } from '../tunnel/live-stats.js';
import { deviceView } from './registry-view.js';
import { AUTH_ERRORS, errorResponses } from './schemas.js';

/** The proxy listeners' ports, as GET /stats shows them; the TLS ones only when configured. */
export interface ProxyPorts {
  http?: number;
  socks5?: number;
  https?: number;
  socks5Tls?: number;
}

export interface StatsOptions {
  store: Pick<RegistryStore, 'listDevices'>;
  stats: LiveStats;
  tailnet?: TailnetView | undefined;
  deviceStatus?: DeviceStatusFeed | undefined;
  /** The proxy listeners' ports; absent or undefined: not listening. */
  listeners?: (() => ProxyPorts | undefined) | undefined;
}

export const stats: FastifyPluginAsync<StatsOptions> = async (app, { store, stats, tailnet, deviceStatus, listeners }) => {
  app.get(
    '/stats',
    {
      config: { access: 'admin' },
      schema: {
        summary: "Now-values and this gateway's last minutes (sampled every few seconds), for a live view",
        response: { 200: { description: 'Devices by health, open tunnels, recent rates', $ref: 'Stats#' }, ...errorResponses(...AUTH_ERRORS, 503) },
      },
    },
    async () => {
      const devices = { total: 0, up: 0, down: 0, unknown: 0, relayed: 0 };
      for (const d of await store.listDevices()) {
        const v = deviceView(d, tailnet, deviceStatus);
        devices.total++;
        devices[v.health.state]++;
        if (v.relayed === true) devices.relayed++;
      }
      return {
        at: new Date().toISOString(),
        intervalSeconds: stats.intervalMs / 1000,
        listeners: listeners?.() ?? null,
        devices,
        tunnelsOpen: await stats.tunnelsOpen(),
        series: stats.series().map((p) => ({ ...p, t: new Date(p.t).toISOString() })),
      };
    },
  );
};
