// Entry point: read configuration, build the parts, start, and stop cleanly on SIGTERM/SIGINT. `tailgate serve`
// calls serve() with its choice of log output; run as a file (node dist/main.js), this module serves with JSON logs.
import cluster from 'node:cluster';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { startGateway, type Gateway, type PrimaryRole } from './app.js';
import { WorkerPool } from './workers/primary.js';
import { serveWorker } from './workers/worker.js';
import { createTailnet } from './tailnet/index.js';
import { HeadscaleRegistrar } from './headscale/client.js';
import { openStore, type NodeStore, type RegistryStore } from './store/index.js';
import type { ApprovedDevice } from './headscale/types.js';

export interface ServeOptions {
  /** The logger for this configuration; JSON lines on stdout when not given. */
  logger?(config: Config): Logger;
  /** Called once, when every listener is up. */
  onListening?(gateway: Gateway): void;
}

/**
 * Runs tailgate as the environment configures it until SIGTERM or SIGINT. It owns the process from here: it exits
 * 2 on a configuration error, 1 when start-up fails, 0 after a clean stop.
 */
export async function serve(options: ServeOptions = {}): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tailgate: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = options.logger?.(config) ?? createLogger(config.logLevel);
  // A worker process of a gateway with TAILGATE_WORKERS > 1 (node:cluster runs this same entry): the proxy listeners
  // only; the primary below does everything else.
  if (cluster.isWorker) return serveWorker(config, log);
  for (const warning of config.warnings) log.warn(warning);
  // With TS_AUTHKEY we run our own tailscaled and dial devices through it; without, the host is on the tailnet already.
  const tailnet = config.tailnet ? createTailnet(config.tailnet, log) : undefined;
  // A device approved through us gets its tailnet path warmed up, so the first proxied connection does not wait.
  const warmUp = tailnet ? (device: ApprovedDevice) => tailnet.supervisor.warmUp(device.ipv4) : undefined;
  const registrar = config.headscale ? new HeadscaleRegistrar(config.headscale, log, warmUp) : undefined;
  let gateway: Gateway | undefined;
  let pool: WorkerPool | undefined;
  let store: (NodeStore & RegistryStore) | undefined;
  let stopping = false;

  // Installed before anything starts, so a SIGTERM during start-up also stops tailscaled instead of orphaning it.
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: no new connections, draining tunnels');
    (async () => {
      // The workers first: they drain their tunnels and write their last usage through this process's store.
      await pool?.stop();
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

  try {
    // Opened first: the tailnet warms up the registered devices as soon as control's netmap arrives after each start.
    store = await openStore({ database: config.database, dataDir: config.dataDir, log, timeoutMs: config.databaseTimeoutMs });
    const registry = store;
    // Every enabled device, not only those a key targets directly: a pool's devices carry traffic too.
    tailnet?.supervisor.warmUpAfterStart(async () => (await registry.listDevices()).filter((device) => device.enabled).map((device) => device.ip));
    await tailnet?.start();
    let role: PrimaryRole | undefined;
    if (config.workers > 1) {
      pool = new WorkerPool({ count: config.workers, log, store, tailnet: tailnet?.supervisor, shutdownGraceMs: config.timeouts.shutdownGraceMs });
      role = pool.role(await pool.start());
    }
    gateway = await startGateway(config, log, { dialer: tailnet?.dialer, tailnet: tailnet?.view, registrar, store, cluster: role });
    pool?.adopt(gateway.metrics);
  } catch (err) {
    if (stopping) return; // start-up was cut short by the signal; stop() exits
    await pool?.stop();
    await tailnet?.stop();
    await store?.close();
    process.stderr.write(`tailgate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  options.onListening?.(gateway);
}

function runAsFile(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return pathToFileURL(realpathSync(entry)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (runAsFile()) await serve();
