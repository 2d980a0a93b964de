// Paired CPU comparison of two tailgate builds: both run at the same time, pinned to the same core, each under
// the same load (16 tunnels moving data through it, from two load generators started together), so whatever else
// the machine is doing falls on both alike. Reports each build's gateway CPU per GiB per round and their ratio.
// A sequential A/B run on a 2-core machine shared with other work swings by ±30 % between repeats; this pairing
// removes most of that, at the cost of measuring both builds under contention for one core.
//
//   node --import tsx bench/paired-cpu.ts --a <git ref> --b <git ref> [--rounds 8] [--tunnels 16] [--mib 512]
//
// A is the build under test, B the reference; ratio = A's CPU per GiB / B's (below 1: A is cheaper).
//
// `--mode setup` measures tunnel set-up instead: each build gets `--concurrency` loops (default 32) of the setup
// scenario's work (connect, handshake with auth, device CONNECT, one small request, close) for `--seconds` per round
// (default 4), after 512 warm-up tunnels per listener, and the figure is gateway CPU µs per tunnel. `--b node-floor`
// pairs A with bench/servers/node-floor.ts instead of a second build (HTTP CONNECT only, so every round is http).
//
// Within one start of the two gateways the rounds agree closely, but between starts the ratio moves by up to ±10 %
// even for A/A (each process's own JIT and heap layout), so `--starts N` restarts both gateways N times and the
// verdict is the spread of the per-start ratios, not of the rounds.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { BaselineCheckout, resolveBaseline } from './lib/baseline.js';
import { startDevice } from './lib/endpoints.js';
import { ENDPOINT_CPU, PROXY_CPU } from './lib/harness.js';
import { nodeFloor } from './lib/node-floor.js';
import { createTailgateDatabase, tailgateKind, type Env, type GatewayKind, type RunningGateway, type TailgateSetup } from './lib/paths.js';
import { cpuSeconds, freePort, procStat, killAll, LoadGen, spawnPinned, stop, waitReadyLine, type Pinned } from './lib/procs.js';
import type { SetupResult, ThroughputResult } from './loadgen.js';

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

const repo = path.resolve(import.meta.dirname, '..');
const refs = { a: arg('a'), b: arg('b') };
const rounds = Number(arg('rounds', '8'));
const starts = Number(arg('starts', '1'));
// Seconds each start waits with no traffic before its rounds, measuring what the gateways spend while idle (timers,
// samplers): over a round of a few seconds that background cost is part of the CPU per GiB.
const idleSeconds = Number(arg('idle-seconds', '0'));
const tunnels = Number(arg('tunnels', '16'));
const bytesEachWay = Number(arg('mib', '512')) * (1 << 20);
const mode = arg('mode', 'throughput');
if (mode !== 'throughput' && mode !== 'setup') throw new Error('--mode is throughput or setup');
const seconds = Number(arg('seconds', '4'));
const concurrency = Number(arg('concurrency', '32'));
/** What a round's figure is per: a GiB moved, or a tunnel set up. */
const per = mode === 'setup' ? 'tunnel' : 'GiB';
const log = (s: string) => process.stdout.write(`${s}\n`);

execFileSync('taskset', ['-a', '-p', '-c', String(ENDPOINT_CPU), String(process.pid)], { stdio: 'ignore' });
const logDir = mkdtempSync(path.join(os.tmpdir(), 'tailgate-paired-'));
const checkouts: BaselineCheckout[] = [];
const databases: TailgateSetup[] = [];
const procs: Pinned[] = [];
const gateways: RunningGateway[] = [];
const loadgens: LoadGen[] = [];
process.once('SIGINT', () => {
  killAll();
  for (const c of checkouts) c.remove();
  process.exit(130);
});

try {
  const builds: { which: 'a' | 'b'; kind: GatewayKind }[] = [];
  for (const which of ['a', 'b'] as const) {
    if (refs[which] === 'node-floor') {
      builds.push({ which, kind: nodeFloor });
      continue;
    }
    const commit = resolveBaseline(repo, refs[which]);
    const checkout = new BaselineCheckout(repo, commit);
    checkouts.push(checkout);
    log(`building ${which} = ${refs[which]} (${commit.commit.slice(0, 12)}) in ${checkout.dir}`);
    await checkout.build();
    const setup = await createTailgateDatabase();
    databases.push(setup);
    builds.push({ which, kind: tailgateKind(setup, { path: `tailgate@${which}-${commit.commit.slice(0, 7)}`, dir: checkout.dir }) });
  }
  const sink = spawnPinned('sink', ENDPOINT_CPU, process.execPath, ['--import', 'tsx', 'bench/servers/sink.ts', String(await freePort())], { cwd: repo, pipeStdout: true, logFile: path.join(logDir, 'sink.log') });
  procs.push(sink);
  const target = { host: '127.0.0.1', port: (await waitReadyLine(sink, 20_000)).port };
  const device = await startDevice('go', repo, logDir, 'not needed', procs);
  const env: Env = { repo, logDir, proxyCpu: PROXY_CPU, device: { host: '127.0.0.1', port: device.port }, key: `paired${randomBytes(12).toString('hex')}` };
  for (let i = 0; i < 2; i++) loadgens.push(await LoadGen.start(ENDPOINT_CPU, repo, { ...process.env }));
  const perStart: number[] = [];
  const perStartUser: number[] = [];
  for (let start = 0; start < starts; start++) {
    // Which build starts first alternates too: the first one started may get the warmer caches.
    const order = start % 2 === 0 ? builds : [...builds].reverse();
    const started = new Map<string, RunningGateway>();
    for (const b of order) started.set(b.which, await b.kind.start(env));
    gateways.push(...builds.map((b) => started.get(b.which)!));
    log(`start ${start + 1} of ${starts}`);
    if (idleSeconds > 0) {
      const pair = gateways.slice(-2);
      const before = pair.map((gw) => cpuSeconds(gw.proc!.child.pid!));
      await new Promise((r) => setTimeout(r, idleSeconds * 1000));
      const idle = pair.map((gw, i) => ((cpuSeconds(gw.proc!.child.pid!) - before[i]!) * 1000) / idleSeconds);
      log(`idle CPU over ${idleSeconds} s: A ${idle[0]!.toFixed(1)} ms/s, B ${idle[1]!.toFixed(1)} ms/s`);
    }
    const { total, user } = await runRounds(gateways.slice(-2));
    perStart.push(total);
    perStartUser.push(user);
    for (const gw of gateways.splice(-2)) await gw.stop();
  }
  if (starts > 1) {
    log(`A/B over ${starts} starts, CPU per ${per}:  ${summary(perStart)}`);
    log(`A/B over ${starts} starts, user per ${per}: ${summary(perStartUser)}`);
  }

  async function runRounds(pair: RunningGateway[]): Promise<{ total: number; user: number }> {
    const ratios: number[] = [];
    const userRatios: number[] = [];
    // node-floor serves HTTP CONNECT only: paired with it, every round is http.
    const listeners = pair.every((gw) => gw.listeners.some((l) => l.listener === 'socks5')) ? ['http', 'socks5'] : ['http'];
    const unit = mode === 'setup' ? 'µs/tunnel' : 'ms/GiB';
    const load = mode === 'setup' ? `${concurrency} set-up loops for ${seconds} s` : `${tunnels} tunnels, ${bytesEachWay >> 20} MiB each way`;
    log(`round  listener  A ${unit}  B ${unit}  A/B    user A/B  (A = ${refs.a}, B = ${refs.b}; ${load} per build)`);
    if (mode === 'setup') {
      // Key cached and JIT warm before the first round, as in the setup scenario.
      for (const listener of listeners) {
        await Promise.all(pair.map((gw, i) => loadgens[i]!.request<SetupResult>({ type: 'setup', proxy: gw.listeners.find((l) => l.listener === listener)!.proxy, target, concurrency, maxCount: 512, durationMs: 10_000, warmup: 0 }, 60_000)));
      }
    }
    for (let round = 0; round < rounds; round++) {
      const listener = listeners[round % listeners.length]!;
      // Which load generator serves which build alternates too, so neither build always has the same one.
      const order = round % 4 < 2 ? [0, 1] : [1, 0];
      // And which build's load starts first.
      const first = Math.floor(round / 2) % 2;
      const perUnit = await Promise.all(
        pair.map(async (gw, i) => {
          if (i !== first) await new Promise((r) => setImmediate(r));
          const proxy = gw.listeners.find((l) => l.listener === listener)!.proxy;
          const pid = gw.proc!.child.pid!;
          const before = procStat(pid);
          const loadgen = loadgens[order[i]!]!;
          let units: number;
          if (mode === 'setup') {
            const r = await loadgen.request<SetupResult>({ type: 'setup', proxy, target, concurrency, maxCount: 10_000_000, durationMs: seconds * 1000, warmup: 0 }, seconds * 1000 + 120_000);
            if (r.failures > 0) log(`  ! ${gw.path}: ${r.failures} failed set-ups, e.g. ${r.errors.slice(0, 2).join('; ')}`);
            units = Math.max(1, r.count) / 1e6;
          } else {
            const r = await loadgen.request<ThroughputResult>({ type: 'throughput', proxy, target, tunnels, bytesEachWay, timeoutMs: 240_000 }, 300_000);
            if (r.errors.length > 0) throw new Error(`${gw.path}: ${r.errors.join('; ')}`);
            units = (r.upBytes + r.downBytes) / (1 << 30) / 1000;
          }
          const after = procStat(pid);
          return { total: (after.cpuSeconds - before.cpuSeconds) / units, user: (after.userSeconds - before.userSeconds) / units };
        }),
      );
      const ratio = perUnit[0]!.total / perUnit[1]!.total;
      const userRatio = perUnit[0]!.user / perUnit[1]!.user;
      ratios.push(ratio);
      userRatios.push(userRatio);
      const width = 2 + unit.length;
      log(`${String(round + 1).padStart(5)}  ${listener.padEnd(8)}  ${perUnit[0]!.total.toFixed(0).padStart(width)}  ${perUnit[1]!.total.toFixed(0).padStart(width)}  ${ratio.toFixed(3)}  ${userRatio.toFixed(3)}`);
    }
    log(`A/B gateway CPU per ${per}:  ${summary(ratios)} over ${ratios.length} rounds`);
    log(`A/B gateway user per ${per}: ${summary(userRatios)} over ${ratios.length} rounds`);
    return { total: geometricMean(ratios), user: geometricMean(userRatios) };
  }
} finally {
  for (const l of loadgens) await l.close();
  for (const gw of gateways) await gw.stop();
  for (const p of procs) await stop(p);
  await Promise.allSettled(databases.map((d) => d.dropDatabase()));
  for (const c of checkouts) c.remove();
}

function geometricMean(xs: number[]): number {
  return Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
}

function summary(ratios: number[]): string {
  const sorted = [...ratios].sort((x, y) => x - y);
  const text = `geometric mean ${geometricMean(ratios).toFixed(3)}, median ${sorted[sorted.length >> 1]!.toFixed(3)}, range ${sorted[0]!.toFixed(3)}–${sorted.at(-1)!.toFixed(3)}`;
  if (ratios.length < 6) return text;
  // Two standard errors of the mean log ratio either side: about a 95 % interval for the geometric mean.
  const logs = ratios.map(Math.log);
  const mean = logs.reduce((a, b) => a + b, 0) / logs.length;
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - mean) ** 2, 0) / (logs.length - 1));
  const half = (2 * sd) / Math.sqrt(logs.length);
  return `${text}, ±2 SE ${Math.exp(mean - half).toFixed(3)}–${Math.exp(mean + half).toFixed(3)}`;
}
