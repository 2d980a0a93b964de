// setup-pool (issue 10): setup-rate through a key whose target is a pool of 100 devices against keys whose target is
// one device, on the same gateway process, slices interleaved. The ratio rows say whether choosing a device per
// tunnel costs anything measurable at the rates the gateway reaches.
import { randomBytes } from 'node:crypto';
import { addGatewayRow, cpuSnapshot, median, type Ctx, type Scenario } from '../lib/harness.js';
import { startDeviceSet, type DeviceSet } from '../lib/endpoints.js';
import { measureSetup, round, type Measured, type SetupNames, type SetupOutcome } from '../lib/measure.js';
import { adminApi, type GatewayKind, type TailgateGateway } from '../lib/paths.js';
import { stop, type Pinned } from '../lib/procs.js';
import type { Row } from '../lib/report.js';

const POOL_SIZE = 100;
/**
 * The keys every gateway carries. `single2` is a second single-device key, the same thing measured twice: its ratio to
 * `single` is the noise band of this comparison.
 */
const KEYS = ['single', 'pool100', 'single2'] as const;
type KeyName = (typeof KEYS)[number];

const namesFor = (key: string): SetupNames => ({ rate: `setup-rate-${key}`, p50: `setup-p50-${key}`, p99: `setup-p99-${key}`, cpu: `setup-cpu-${key}`, details: `setup-pool-${key}` });

const RATIOS = {
  /** issue 10: within 5 % of the single-device key. */
  pool: 'setup-rate-pool100-ratio',
  /** The gateway's CPU per tunnel, pool key / single-device key: steadier than the rate on a shared machine. */
  poolCpu: 'setup-cpu-pool100-ratio',
  /** The A/A pair: how far two identical keys drift apart in the same run. */
  noise: 'setup-rate-single2-ratio',
} as const;

/** Every pool device must have carried tunnels (a row per path, without a listener: the devices are shared). */
const DIALLED = 'setup-pool-devices-dialled';

/**
 * BENCH_POOL_ONE_ADDRESS=1, a diagnostic: the 100 pool devices (still 100 devices to the gateway) share one address,
 * so the device stand-in serves the pool through one listening socket, as it serves each single device. What then
 * remains of the difference is the gateway's own. No count of devices dialled in this mode.
 */
const ONE_ADDRESS = process.env.BENCH_POOL_ONE_ADDRESS === '1';

/** The loopback addresses of one tailgate build's devices: its own, so that the accept counts tell builds apart. */
function addressesOf(build: number): { pool: string[]; singles: [string, string] } {
  return {
    pool: Array.from({ length: POOL_SIZE }, (_, i) => `127.1.${build}.${ONE_ADDRESS ? 1 : i + 1}`),
    singles: [`127.2.${build}.1`, `127.2.${build}.2`],
  };
}

interface Device {
  id: number;
  name: string | null;
}

/**
 * The devices, the pool and the three keys, through the management API as an operator makes them: a device comes
 * into being with a binding (POST /register, a throw-away key), the pool lists the 100 devices' ids, and each measured
 * key is made by POST /keys. Once per build: the database outlives the gateway processes. Returns the secrets.
 */
async function provision(gw: TailgateGateway, build: number, port: number): Promise<Record<KeyName, string>> {
  const { pool, singles } = addressesOf(build);
  const tag = randomBytes(4).toString('hex');
  const devices = [...pool.map((ip, i) => ({ ip, name: `bench-${tag}-pool-${i + 1}` })), ...singles.map((ip, i) => ({ ip, name: `bench-${tag}-single-${i + 1}` }))];
  for (const d of devices) await adminApi(gw, 'POST', '/register', { key: `bench-device-${d.name}-${randomBytes(12).toString('hex')}`, ip: d.ip, port, name: d.name });
  const idOf = new Map((await adminApi<Device[]>(gw, 'GET', '/devices')).map((d) => [d.name, d.id]));
  const id = (name: string) => {
    const v = idOf.get(name);
    if (v === undefined) throw new Error(`GET /devices does not list the device registered as ${name}`);
    return v;
  };
  const made = await adminApi<{ id: number }>(gw, 'POST', '/pools', { name: `bench-pool-${tag}`, devices: devices.slice(0, POOL_SIZE).map((d) => id(d.name)) });
  const key = async (name: string, target: { device: number } | { pool: number }) => (await adminApi<{ key: string }>(gw, 'POST', '/keys', { name: `bench-${name}-${tag}`, ...target })).key;
  return {
    single: await key('single', { device: id(devices[POOL_SIZE]!.name) }),
    pool100: await key('pool100', { pool: made.id }),
    single2: await key('single2', { device: id(devices[POOL_SIZE + 1]!.name) }),
  };
}

export const setupPool: Scenario = {
  name: 'setup-pool',
  ownRun: true,
  rows: [...KEYS.flatMap((k) => [`setup-rate-${k}`, `setup-p50-${k}`, `setup-p99-${k}`, `setup-cpu-${k}`]), RATIOS.pool, RATIOS.poolCpu, RATIOS.noise],
  needs: { paths: 'admin-api' },
  async run(ctx, kinds) {
    const repeats = ctx.sizes.setupRepeats;
    const sliceMs = ctx.sizes.setupDurationMs / repeats;
    ctx.log(
      `setup-pool: as setup (concurrency 64, ${repeats} x ${sliceMs} ms per key and listener, key order rotating per round); one gateway per build with a key for a pool of ${POOL_SIZE} devices and two keys for one device each, the devices being the Go stand-in on ${POOL_SIZE + 2} loopback addresses per build`,
    );
    const builds = kinds.map((kind, i) => ({ kind, ...addressesOf(i) }));
    const procs: Pinned[] = [];
    const gateways: TailgateGateway[] = [];
    try {
      const devices = await startDeviceSet(ctx.env.repo, ctx.env.logDir, [...new Set(builds.flatMap((b) => [...b.pool, ...b.singles]))], procs);
      const variants: Measured[] = [];
      const provisioned: typeof builds = [];
      for (const [i, { kind }] of builds.entries()) {
        if (kind.family !== 'tailgate') continue;
        try {
          // One process per build carries both listeners and all three keys, so the keys are compared on the same process:
          // two processes of the same build drift apart by up to 11 % here (bench/README.md), more than the 5 % asked.
          ctx.env.profileLabel = ctx.scenario;
          const gw = await kind.start(ctx.env);
          gateways.push(gw);
          const secrets = await provision(gw, i, devices.port);
          provisioned.push(builds[i]!);
          for (const l of gw.listeners) {
            for (const key of KEYS) variants.push({ path: gw.path, listener: l.listener, variant: key, proxy: { ...l.proxy, key: secrets[key] }, cpu: () => cpuSnapshot(ctx, gw, devices.procs) });
          }
        } catch (err) {
          ctx.log(`  ! ${kind.path}: ${(err as Error).message}`);
          ctx.details.push({ scenario: ctx.scenario, path: kind.path, error: (err as Error).message });
        }
      }
      if (variants.length === 0) return;
      const outcomes = await measureSetup(ctx, variants, {
        names: (m) => namesFor(m.variant!),
        concurrency: 64,
        repeats,
        sliceMs,
        soloMs: ctx.sizes.setupDurationMs / 5,
        warmupTunnels: 512,
        // Each round starts with the next key of every listener's three, so each key runs first, second and third
        // equally often: whatever a slice's position costs is spread over the keys instead of charged to one.
        order: (round) => variants.map((_, j) => variants[j - (j % KEYS.length) + ((j + round) % KEYS.length)]!),
      });
      addRatios(ctx, variants, outcomes);
      await countDialled(ctx, provisioned, devices);
    } catch (err) {
      // As for the other scenarios: reported, and the run goes on (--check then finds the rows missing).
      ctx.log(`  ! ${ctx.scenario}: ${(err as Error).message}`);
      ctx.details.push({ scenario: ctx.scenario, error: (err as Error).message });
    } finally {
      for (const gw of gateways) await gw.stop();
      for (const p of procs) await stop(p);
    }
  },
  check(rows: Row[]) {
    if (ONE_ADDRESS) return [];
    const dialled = rows.find((r) => r.scenario === DIALLED && r.path === 'tailgate');
    if (!dialled) return ['no count of the pool devices that carried tunnels'];
    return dialled.value === POOL_SIZE ? [] : [`only ${dialled.value} of the pool's ${POOL_SIZE} devices carried a tunnel`];
  },
};

/** The ratio rows of each (path, listener), with the round-by-round ratios in the details. */
function addRatios(ctx: Ctx, variants: Measured[], outcomes: Map<Measured, SetupOutcome>): void {
  const groups = new Map<string, Partial<Record<KeyName, SetupOutcome>>>();
  const heads = new Map<string, Measured>();
  for (const m of variants) {
    const o = outcomes.get(m);
    if (!o) continue;
    const g = `${m.path}/${m.listener}`;
    if (!groups.has(g)) groups.set(g, {});
    groups.get(g)![m.variant as KeyName] = o;
    heads.set(g, m);
  }
  for (const [g, { single, pool100, single2 }] of groups) {
    const m = heads.get(g)!;
    if (!single || !pool100 || !single2) continue;
    const gw = { path: m.path as TailgateGateway['path'] };
    // Slice i of every key ran in the same round, so their ratio is free of the drift between rounds.
    const perRound = (a: SetupOutcome, b: SetupOutcome) => a.slices.map((s, i) => round(s.rate / b.slices[i]!.rate, 3));
    const poolRounds = perRound(pool100, single);
    const noiseRounds = perRound(single2, single);
    addGatewayRow(ctx, RATIOS.pool, gw, m.listener, pool100.rate / single.rate, 'x');
    if (pool100.cpuUsPerTunnel !== undefined && single.cpuUsPerTunnel) addGatewayRow(ctx, RATIOS.poolCpu, gw, m.listener, pool100.cpuUsPerTunnel / single.cpuUsPerTunnel, 'x');
    addGatewayRow(ctx, RATIOS.noise, gw, m.listener, single2.rate / single.rate, 'x');
    // What the shared core spends per tunnel (gateway + device): the rate's bound when that core is saturated, and
    // much steadier than the rate while other work on the machine comes and goes.
    const core = (o: SetupOutcome) => median(o.slices.map((x) => (x.cpuUsPerTunnel ?? NaN) + x.deviceCpuUsPerTunnel));
    const device = (o: SetupOutcome) => median(o.slices.map((x) => x.deviceCpuUsPerTunnel));
    ctx.details.push({
      scenario: 'setup-pool',
      path: m.path,
      listener: m.listener,
      medianRate: { single: round(single.rate), pool100: round(pool100.rate), single2: round(single2.rate) },
      poolOverSinglePerRound: poolRounds,
      poolOverSingleMedianOfRounds: round(median(poolRounds), 3),
      poolOverBothSingles: round(pool100.rate / ((single.rate + single2.rate) / 2), 3),
      single2OverSinglePerRound: noiseRounds,
      single2OverSingleMedianOfRounds: round(median(noiseRounds), 3),
      medianDeviceCpuUsPerTunnel: { single: round(device(single), 1), pool100: round(device(pool100), 1), single2: round(device(single2), 1) },
      medianCoreCpuUsPerTunnel: { single: round(core(single), 1), pool100: round(core(pool100), 1), single2: round(core(single2), 1) },
      coreCpuPoolOverSingle: round(core(pool100) / core(single), 3),
      coreCpuSingle2OverSingle: round(core(single2) / core(single), 3),
    });
  }
}

/** How many of each build's pool devices the device stand-in saw connections on, and how evenly. */
async function countDialled(ctx: Ctx, builds: { kind: GatewayKind; pool: string[]; singles: [string, string] }[], devices: DeviceSet): Promise<void> {
  const accepted = await devices.accepted();
  for (const b of builds) {
    const singleDeviceConnections = b.singles.map((ip) => accepted.get(ip) ?? 0);
    if (ONE_ADDRESS) {
      ctx.details.push({ scenario: 'setup-pool', path: b.kind.path, poolDevicesShareOneAddress: b.pool[0], poolConnections: { total: accepted.get(b.pool[0]!) ?? 0 }, singleDeviceConnections });
      continue;
    }
    const pool = b.pool.map((ip) => accepted.get(ip) ?? 0).sort((x, y) => x - y);
    const dialled = pool.filter((n) => n > 0).length;
    addGatewayRow(ctx, DIALLED, b.kind, undefined, dialled, 'devices');
    ctx.details.push({
      scenario: 'setup-pool',
      path: b.kind.path,
      poolDevicesDialled: dialled,
      poolConnections: { total: pool.reduce((s, n) => s + n, 0), min: pool[0], median: median(pool), max: pool[pool.length - 1] },
      singleDeviceConnections,
    });
  }
}
