// A key capped at 10 MiB/s down (issue 11): the rate one tunnel and 16 tunnels sharing the cap get through tailgate,
// over a measured window after a warm-up, and the CPU of the process (gateway and clients), next to the same key uncapped. tailgate runs
// in this process (startGateway, embedded store in a temporary directory: the store is not on the data path); the
// device stand-in (bench/servers/node-device.ts) and the sink (bench/servers/sink.ts) run as their own processes.
// Usage: node --import tsx bench/capped.ts [--seconds 10] [--rate-mib 10]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { startGateway } from '../src/app.js';
import { loadConfig } from '../src/config.js';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const SECONDS = opt('seconds', 10);
const RATE = opt('rate-mib', 10) * MiB;
const WARMUP_MS = 1_000;
const TOKEN = 'bench-admin-token-0123456789';

function child(script: string): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'servers', script)], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start`)), 15_000);
    createInterface({ input: proc.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve({ proc, port: (JSON.parse(line) as { port: number }).port });
    });
  });
}

/** A CONNECT tunnel to the sink asking for an endless download; counts what arrives. */
function tunnel(httpPort: number, key: string, sinkPort: number): Promise<{ bytes(): number; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(httpPort, '127.0.0.1');
    const auth = Buffer.from(`${key}:${key}`).toString('base64');
    s.once('error', reject);
    s.write(`CONNECT 127.0.0.1:${sinkPort} HTTP/1.1\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
    let n = 0;
    let head = '';
    const onData = (c: Buffer) => {
      head += c.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!head.startsWith('HTTP/1.1 200')) return reject(new Error(head.split('\r\n')[0]));
      s.off('data', onData);
      n = head.length - end - 4;
      s.on('data', (d: Buffer) => (n += d.length));
      s.write(`DOWN ${Number.MAX_SAFE_INTEGER}\n`);
      resolve({ bytes: () => n, socket: s });
    };
    s.on('data', onData);
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tailgate-bench-capped-'));
  const [device, sink] = await Promise.all([child('node-device.ts'), child('sink.ts')]);
  const config = loadConfig({
    TAILGATE_DATA_DIR: dir,
    TAILGATE_LISTEN_HOST: '127.0.0.1',
    TAILGATE_HTTP_PORT: '0',
    TAILGATE_SOCKS_PORT: '0',
    TAILGATE_API_PORT: '0',
    TAILGATE_ADMIN_TOKEN: TOKEN,
    TAILGATE_ALLOW_CIDRS: '127.0.0.0/8',
  });
  const gw = await startGateway(config, pino({ level: 'silent' }));
  const api = async (method: string, p: string, body?: unknown) => {
    const r = await fetch(`http://127.0.0.1:${gw.ports.api}${p}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return (await r.json()) as any;
  };
  try {
    const reg = await api('POST', '/register', { key: 'bench-capped-device-key', ip: '127.0.0.1', port: device.port });
    const deviceId = reg.node.id as number;
    const rows: string[] = [];
    for (const [label, tunnels, limits] of [
      ['uncapped', 1, {}],
      ['capped', 1, { bytesPerSecondDown: RATE }],
      ['capped', 16, { bytesPerSecondDown: RATE }],
    ] as const) {
      const key = (await api('POST', '/keys', { device: deviceId, limits })).key as string;
      const open: { bytes(): number; socket: net.Socket }[] = [];
      for (let i = 0; i < tunnels; i++) open.push(await tunnel(gw.ports.http, key, sink.port));
      const sum = () => open.reduce((n, t) => n + t.bytes(), 0);
      await new Promise((r) => setTimeout(r, WARMUP_MS));
      const [b0, t0, c0] = [sum(), performance.now(), process.cpuUsage()];
      await new Promise((r) => setTimeout(r, SECONDS * 1000));
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(c0);
      const rate = (sum() - b0) / seconds;
      const cpuPct = ((cpu.user + cpu.system) / 1e6 / seconds) * 100;
      const cap = 'bytesPerSecondDown' in limits ? `${(RATE / MiB).toFixed(0)} MiB/s` : '-';
      const dev = 'bytesPerSecondDown' in limits ? `${(((rate - RATE) / RATE) * 100).toFixed(2)} %` : '-';
      rows.push(`| ${label} | ${tunnels} | ${cap} | ${(rate / MiB).toFixed(3)} MiB/s | ${dev} | ${cpuPct.toFixed(1)} % |`);
      for (const t of open) t.socket.destroy();
      await new Promise((r) => setTimeout(r, 300));
    }
    console.log(`over ${SECONDS} s after ${WARMUP_MS} ms of warm-up, Node ${process.version}, ${os.cpus().length} CPUs`);
    console.log('| key | tunnels | cap | measured (down) | vs cap | CPU of this process (gateway + clients) |');
    console.log('|---|---|---|---|---|---|');
    for (const r of rows) console.log(r);
  } finally {
    await gw.close();
    device.proc.kill();
    sink.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
