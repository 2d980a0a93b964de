// The device-side proxy every path ends in (the stand-in for a device on its tailnet address).
import path from 'node:path';
import readline from 'node:readline';
import { PROXY_CPU } from './harness.js';
import type { DeviceChoice } from './options.js';
import { ensureGoDevice, gliderArgs } from './paths.js';
import { freePort, spawnPinned, waitPort, waitReadyLine, type Pinned } from './procs.js';
import { sleep } from './harness.js';

/**
 * Starts the chosen device stand-in on the proxies' core and returns its port and what ran (for
 * `versions.device`). Its processes go into `procs` as they start, so a failure leaves none unaccounted for.
 * `glider` is the built glider, or why there is none.
 */
export async function startDevice(choice: DeviceChoice, repo: string, logDir: string, glider: { bin: string; version: string } | string, procs: Pinned[]): Promise<{ port: number; version: string }> {
  const logFile = path.join(logDir, 'device.log');
  if (choice === 'go') {
    // Two processes on one SO_REUSEPORT port: 10,000 tunnels need more descriptors than one may hold here.
    const bin = await ensureGoDevice(repo);
    const first = spawnPinned('device', PROXY_CPU, bin, [String(await freePort())], { pipeStdout: true, logFile });
    procs.push(first);
    const port = (await waitReadyLine(first, 10_000)).port;
    const second = spawnPinned('device', PROXY_CPU, bin, [String(port)], { pipeStdout: true, logFile });
    procs.push(second);
    await waitReadyLine(second, 10_000);
    return { port, version: 'bench/device/main.go (minimal Go CONNECT proxy: splice, half-close; 2 processes on one SO_REUSEPORT port)' };
  }
  if (choice === 'glider') {
    if (typeof glider === 'string') throw new Error(`--device glider needs glider: ${glider}`);
    const port = await freePort();
    const device = spawnPinned('device', PROXY_CPU, glider.bin, gliderArgs([`http://127.0.0.1:${port}`]), { logFile });
    procs.push(device);
    await waitPort(port, 10_000, device);
    return { port, version: `glider ${glider.version} as a plain HTTP CONNECT proxy (no auth, no forwarder)` };
  }
  const device = spawnPinned('device', PROXY_CPU, process.execPath, ['--import', 'tsx', 'bench/servers/node-device.ts', String(await freePort())], { cwd: repo, pipeStdout: true, logFile });
  procs.push(device);
  return { port: (await waitReadyLine(device, 20_000)).port, version: 'bench/servers/node-device.ts (minimal Node CONNECT proxy)' };
}

/** Many devices served by the Go stand-in: one port on each of several loopback addresses. */
export interface DeviceSet {
  port: number;
  /** Its processes (two, sharing every address's port), for the CPU samples. */
  procs: Pinned[];
  /** Connections each address accepted so far, summed over the processes. */
  accepted(): Promise<Map<string, number>>;
}

/**
 * Starts the Go device stand-in listening on `addresses` (loopback, e.g. 127.1.0.1 … 127.1.0.100), two processes
 * on the proxies' core as for the run's device. Its processes go into `procs` as they start; the caller stops them.
 */
export async function startDeviceSet(repo: string, logDir: string, addresses: readonly string[], procs: Pinned[]): Promise<DeviceSet> {
  const bin = await ensureGoDevice(repo);
  const logFile = path.join(logDir, 'device-set.log');
  const list = addresses.join(',');
  const first = spawnPinned('device-set', PROXY_CPU, bin, [String(await freePort()), list], { pipeStdout: true, logFile });
  procs.push(first);
  const port = (await waitReadyLine(first, 10_000)).port;
  const second = spawnPinned('device-set', PROXY_CPU, bin, [String(port), list], { pipeStdout: true, logFile });
  procs.push(second);
  await waitReadyLine(second, 10_000);
  const mine = [first, second];
  // Each process answers SIGUSR1 with one {"accepted":{...}} line; the latest one per process is kept.
  const latest = new Map<Pinned, Record<string, number>>();
  for (const p of mine) {
    readline.createInterface({ input: p.child.stdout! }).on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { accepted?: Record<string, number> };
        if (msg.accepted) latest.set(p, msg.accepted);
      } catch {
        // not our line
      }
    });
  }
  return {
    port,
    procs: mine,
    async accepted() {
      latest.clear();
      for (const p of mine) p.child.kill('SIGUSR1');
      const deadline = Date.now() + 5_000;
      while (latest.size < mine.length) {
        if (Date.now() > deadline) throw new Error(`device-set: no accept counts from ${mine.length - latest.size} of its processes within 5 s`);
        await sleep(20);
      }
      const sum = new Map<string, number>();
      for (const counts of latest.values()) for (const [a, n] of Object.entries(counts)) sum.set(a, (sum.get(a) ?? 0) + n);
      return sum;
    },
  };
}
