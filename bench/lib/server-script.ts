// The small Node gateways of bench/servers/ (proxy-chain, node-floor): a script that takes the bench key, the device
// and a port, prints its ready line and serves HTTP CONNECT. Started like every other gateway: fresh per (scenario,
// listener), pinned to the proxies' core, its output in `<name>.log`.
import path from 'node:path';
import type { Env, RunningGateway } from './paths.js';
import { freePort, spawnPinned, stop, waitReadyLine } from './procs.js';

/** `nodeArgs` go before the script (V8 flags, --cpu-prof); `processEnv` replaces the inherited environment. */
export async function startServerScript(env: Env, name: 'proxy-chain' | 'node-floor', nodeArgs: string[] = [], processEnv?: NodeJS.ProcessEnv): Promise<RunningGateway> {
  const args = [...nodeArgs, '--import', 'tsx', `bench/servers/${name}.ts`, env.key, `${env.device.host}:${env.device.port}`, String(await freePort())];
  const p = spawnPinned(name, env.proxyCpu, process.execPath, args, { cwd: env.repo, pipeStdout: true, logFile: path.join(env.logDir, `${name}.log`), env: processEnv });
  let port: number;
  try {
    ({ port } = await waitReadyLine(p, 20_000));
  } catch (err) {
    // One that did not come up in time must not outlive the run (its pipes would keep the driver alive).
    await stop(p);
    throw err;
  }
  return {
    path: name,
    proc: p,
    listeners: [{ listener: 'http', proxy: { kind: 'http', host: '127.0.0.1', port, key: env.key } }],
    // SIGTERM exits at once: --cpu-prof writes its profile on that exit.
    stop: () => stop(p),
  };
}
