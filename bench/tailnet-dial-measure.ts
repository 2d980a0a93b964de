// Measures the two userspace dial modes through the real offline scene: tailscaled's SOCKS5 server vs. the
// LocalAPI ts-dial upgrade. Same tailscaled, same device, same device proxy; only the dialer differs.
//   node --import tsx bench/tailnet-dial-measure.ts        (as root; re-runs itself inside `unshare -n`)
// Prints connection setup latency (dial + CONNECT answered by the device proxy) and single/parallel stream throughput.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/log.js';
import { HeadscaleRegistrar } from '../src/headscale/client.js';
import type { Dialer } from '../src/core/dialer.js';
import { startTailnet } from '../src/tailnet/index.js';
import { LocalApiDialer } from '../src/tailnet/localapi-dialer.js';
import { TailscaledSocksDialer } from '../src/tailnet/socks-dialer.js';
import { CONTROL_IP, DEVICE_PROXY_PORT, HEADSCALE_URL, inPrivateNetns, OFFLINE_TAILSCALE_ENV, spawnInPrivateNetns, TailnetScene } from '../testbed/tailnet-scene.js';
import { waitFor } from '../testbed/wait.js';
import { requireTailnetTools } from '../testbed/tailnet-tools.js';

const SETUPS = Number(process.env.MEASURE_SETUPS ?? 300);
const STREAM_MB = Number(process.env.MEASURE_MB ?? 256);
const PARALLEL = Number(process.env.MEASURE_PARALLEL ?? 8);

/** Dial the device proxy, CONNECT to target, resolve when the 200 arrives. */
async function tunnel(dialer: Dialer, deviceIp: string, target: string): Promise<net.Socket> {
  const s = await dialer.dial(deviceIp, DEVICE_PROXY_PORT, 10_000);
  s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  return new Promise((resolve, reject) => {
    let head = '';
    const onData = (c: Buffer) => {
      head += c.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      if (!head.startsWith('HTTP/1.1 200')) return reject(new Error(head.split('\r\n')[0]));
      s.pause();
      if (end + 4 < head.length) s.unshift(Buffer.from(head.slice(end + 4), 'latin1'));
      resolve(s);
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measureSetup(dialer: Dialer, ip: string, target: string) {
  const times: number[] = [];
  const failures = new Map<string, number>();
  for (let i = 0; i < SETUPS; i++) {
    const t0 = performance.now();
    try {
      const s = await tunnel(dialer, ip, target);
      times.push(performance.now() - t0);
      s.destroy();
    } catch (err) {
      const what = `${(err as Error).message.replace(/\d+ ms/, 'N ms')} after ${Math.round(performance.now() - t0)} ms`;
      failures.set(what, (failures.get(what) ?? 0) + 1);
    }
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p95: percentile(times, 95), p99: percentile(times, 99), failures };
}

async function download(dialer: Dialer, ip: string, target: string, bytes: number): Promise<void> {
  const s = await tunnel(dialer, ip, target);
  s.write(`${bytes}\n`);
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= bytes) resolve();
    });
    s.resume();
    s.once('error', reject);
    s.once('close', () => (got >= bytes ? resolve() : reject(new Error(`closed after ${got} bytes`))));
  });
  s.destroy();
}

async function measureThroughput(dialer: Dialer, ip: string, target: string, streams: number) {
  const per = Math.floor((STREAM_MB * 1024 * 1024) / streams);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: streams }, () => download(dialer, ip, target, per)));
  const s = (performance.now() - t0) / 1000;
  return (per * streams * 8) / s / 1e6; // Mbit/s
}

async function main(): Promise<void> {
  const tools = await requireTailnetTools();
  Object.assign(process.env, OFFLINE_TAILSCALE_ENV);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tailgate-measure-'));
  const scene = await TailnetScene.start(tools, dir);
  // Source: "<n>\n" -> n bytes.
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const source = net.createServer((sock) => {
    sock.once('data', (d) => {
      let left = Number(d.toString().trim());
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void sock.once('drain', pump);
        }
        sock.end();
      };
      pump();
    });
    sock.on('error', () => sock.destroy());
  });
  await new Promise<void>((r) => source.listen(0, CONTROL_IP, r));
  const target = `${CONTROL_IP}:${(source.address() as net.AddressInfo).port}`;
  const log = createLogger('warn');
  const device = await scene.addDevice('device-m', 1);
  const tn = await startTailnet(
    {
      authKey: scene.preAuthKey,
      loginServer: HEADSCALE_URL,
      hostname: 'tailgate',
      stateDir: path.join(dir, 'gw'),
      socket: path.join(dir, 'gw', 'tailscaled.sock'),
      userspace: true,
      tailscaledBin: tools.tailscaled,
      tailscaleBin: tools.tailscale,
      dialMode: 'socks5',
      upExtraArgs: [],
      tailscaledExtraArgs: [],
      upTimeoutMs: 60_000,
      readyTimeoutMs: 30_000,
    },
    log,
  );
  try {
    const approved = await new HeadscaleRegistrar({ url: HEADSCALE_URL, apiKey: scene.apiKey, user: scene.user, timeoutMs: 10_000 }, log).approve(device.registrationKey);
    const socks = new TailscaledSocksDialer(tn.supervisor);
    const localapi = new LocalApiDialer(path.join(dir, 'gw', 'tailscaled.sock'));
    await waitFor('device reachable', 30_000, async () => {
      (await tunnel(socks, approved.ipv4, target)).destroy();
      return true;
    }, 500);
    const status = await tn.supervisor.localApi.get('/localapi/v0/status', 2_000);
    const peer = Object.values((JSON.parse(status) as { Peer: Record<string, { CurAddr?: string; Relay?: string }> }).Peer)[0];
    console.log(`path to the device: ${peer?.CurAddr ? `direct ${peer.CurAddr}` : `DERP relay ${peer?.Relay}`}`);
    console.log(`cpus: ${os.cpus().length} x ${os.cpus()[0]?.model}; setups per mode: ${SETUPS}; stream total: ${STREAM_MB} MiB`);
    // Alternate the order so neither mode always runs on a colder tailscaled.
    for (const round of [0, 1]) {
      for (const [name, dialer] of (round === 0 ? [['socks5', socks], ['localapi', localapi]] : [['localapi', localapi], ['socks5', socks]]) as [string, Dialer][]) {
        const setup = await measureSetup(dialer, approved.ipv4, target);
        const one = await measureThroughput(dialer, approved.ipv4, target, 1);
        const many = await measureThroughput(dialer, approved.ipv4, target, PARALLEL);
        console.log(
          `round ${round} ${name.padEnd(8)} setup p50 ${setup.p50.toFixed(2)} ms p95 ${setup.p95.toFixed(2)} ms p99 ${setup.p99.toFixed(2)} ms | ` +
            `1 stream ${one.toFixed(0)} Mbit/s | ${PARALLEL} streams ${many.toFixed(0)} Mbit/s`,
        );
        for (const [what, n] of setup.failures) console.log(`  ${name}: ${n} failed set-ups: ${what}`);
      }
    }
  } finally {
    await tn.stop();
    source.close();
    await scene.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.env.TAILGATE_E2E_NETNS === '1') {
  if (!inPrivateNetns()) throw new Error('not in a private network namespace');
  await main();
} else {
  const { child, sweep } = spawnInPrivateNetns([fileURLToPath(import.meta.url)], process.env);
  child.stdout.pipe(process.stdout);
  child.stderr.pipe(process.stderr);
  child.once('exit', (code) => {
    sweep();
    process.exit(code ?? 1);
  });
}
