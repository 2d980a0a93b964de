// The `node-floor` path (issue 14): bench/servers/node-floor.ts, the least a raw-`net` HTTP CONNECT gateway does per
// tunnel, started like every other gateway: fresh per (scenario, listener), pinned to the proxies' core, with the
// same V8 heap flag as tailgate so that idle memory compares like for like. HTTP CONNECT only.
import path from 'node:path';
import type { GatewayKind } from './paths.js';
import { freePort, spawnPinned, stop, waitReadyLine } from './procs.js';

export const nodeFloor: GatewayKind = {
  path: 'node-floor',
  family: 'node-floor',
  listeners: ['http'],
  async start(env) {
    // Under --profile it is profiled too: the same function list next to tailgate's says where the difference lies.
    // A directory of its own, default file names: tsx's loader thread writes a profile too, which a fixed
    // --cpu-prof-name would let overwrite the main thread's (the larger file is the main thread).
    const dir = env.profileDir ? path.join(env.profileDir, `${env.profileLabel ?? 'node-floor'}-node-floor`) : undefined;
    const profile = dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
    const p = spawnPinned(
      'node-floor',
      env.proxyCpu,
      process.execPath,
      [...profile, '--initial-old-space-size=64', '--import', 'tsx', 'bench/servers/node-floor.ts', env.key, `${env.device.host}:${env.device.port}`, String(await freePort())],
      { cwd: env.repo, pipeStdout: true, logFile: path.join(env.logDir, 'node-floor.log') },
    );
    const { port } = await waitReadyLine(p, 20_000);
    return {
      path: 'node-floor',
      proc: p,
      listeners: [{ listener: 'http', proxy: { kind: 'http', host: '127.0.0.1', port, key: env.key } }],
      // SIGTERM exits at once: --cpu-prof writes its profile on that exit.
      stop: () => stop(p),
    };
  },
};
