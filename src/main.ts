// Entry point: read configuration, build the parts, start, and stop cleanly on SIGTERM/SIGINT.
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { startGateway, type Gateway } from './app.js';
import { createTailnet } from './tailnet/index.js';
import { HeadscaleRegistrar } from './headscale/client.js';
import { openStore, type NodeStore, type RegistryStore } from './store/index.js';
import type { ApprovedDevice } from './headscale/types.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tailgate: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  for (const warning of config.warnings) log.warn(warning);
  // With TS_AUTHKEY we run our own tailscaled and dial devices through it; without, the host is on the tailnet already.
  const tailnet = config.tailnet ? createTailnet(config.tailnet, log) : undefined;
  // A device approved through us gets its tailnet path warmed up, so the first proxied connection does not wait.
  const warmUp = tailnet ? (device: ApprovedDevice) => tailnet.supervisor.warmUp(device.ipv4) : undefined;
  const registrar = config.headscale ? new HeadscaleRegistrar(config.headscale, log, warmUp) : undefined;
  let gateway: Gateway | undefined;
  let store: (NodeStore & RegistryStore) | undefined;

  // Installed before anything starts, so a SIGTERM during start-up also stops tailscaled instead of orphaning it.
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: no new connections, draining tunnels');
    (async () => {
      await gateway?.close();
      await tailnet?.stop();
      await store?.close();
    })().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  // Opened first: the tailnet warms up the registered devices as soon as control's netmap arrives after each start.
  store = await openStore({ database: config.database, dataDir: config.dataDir, log });
  const registry = store;
  // Every enabled device, not only those a key targets directly: a pool's devices carry traffic too.
  tailnet?.supervisor.warmUpAfterStart(async () => (await registry.listDevices()).filter((device) => device.enabled).map((device) => device.ip));
  try {
    await tailnet?.start();
    gateway = await startGateway(config, log, { dialer: tailnet?.dialer, tailnet: tailnet?.view, registrar, store });
  } catch (err) {
    await tailnet?.stop();
    if (!stopping) await registry.close();
    throw err;
  }
}

let stopping = false;

main().catch((err) => {
  if (stopping) return; // start-up was cut short by the signal; stop() exits
  process.stderr.write(`tailgate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
