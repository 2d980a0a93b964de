// The `node-floor` path (issue 14): bench/servers/node-floor.ts, the least a raw-`net` HTTP CONNECT gateway does per
// tunnel, started like every other gateway: fresh per (scenario, listener), pinned to the proxies' core, with the
// same V8 heap flag as tailgate so that idle memory compares like for like. HTTP CONNECT only.
import path from 'node:path';
import type { GatewayKind } from './paths.js';
import { glibcTunables } from '../../src/core/malloc.js';
import { startServerScript } from './server-script.js';

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
    // tailgate's malloc trim threshold too (README "The malloc trim threshold"): a floor for what Node needs, not for
    // what glibc's defaults cost.
    return startServerScript(env, 'node-floor', [...profile, '--initial-old-space-size=64'], { ...process.env, GLIBC_TUNABLES: glibcTunables(process.env.GLIBC_TUNABLES) });
  },
};
