// setup-under-attack: the well-behaved clients' tunnel setup (as `setup` measures it: concurrency 64, tunnel + auth +
// device CONNECT + one small request) on a fresh gateway, first quiet, then while bench/hostile.ts, a process of its
// own on the endpoint core, keeps a pool of stalled handshakes full (slowloris: every place a handshake can stop, each
// one the gateway closes replaced at once) and floods both ports with garbage. Rows per listener:
//   attack-quiet-{rate,p50,p99}, attack-{rate,p50,p99}: setup without and with the attack, same gateway process;
//   attack-stalled-left-open: stalled connections the gateway had not closed by handshake timeout + 10 s after the
//   attack stopped (0 for a gateway whose handshake timeout holds);
//   attack-garbage-left-open: garbage connections not closed within 2 s of their bytes.
import type { AttackReport } from '../hostile.js';
import { ENDPOINT_CPU, addGatewayRow, cpuSnapshot, forEachListener, type Scenario } from '../lib/harness.js';
import { measureSetup, type Measured } from '../lib/measure.js';
import { LoadGen } from '../lib/procs.js';
import type { Row } from '../lib/report.js';

/** tailgate's default TAILGATE_HANDSHAKE_TIMEOUT_MS, which the bench leaves as it is. */
const HANDSHAKE_MS = 10_000;
const GARBAGE_WAIT_MS = 2_000;
const GARBAGE_WORKERS = 16;

export const setupUnderAttack: Scenario = {
  name: 'setup-under-attack',
  rows: ['attack-quiet-rate', 'attack-quiet-p50', 'attack-quiet-p99', 'attack-rate', 'attack-p50', 'attack-p99', 'attack-stalled-left-open', 'attack-garbage-left-open'],
  needs: { paths: 'both-listeners' },
  async run(ctx, kinds) {
    const stalled = ctx.sizes.attackStalled;
    const repeats = ctx.sizes.setupRepeats;
    const sliceMs = ctx.sizes.setupDurationMs / repeats;
    ctx.log(
      `setup-under-attack: concurrency 64, ${repeats} x ${sliceMs} ms, quiet then with ${stalled} stalled handshakes kept open and ${GARBAGE_WORKERS} garbage workers (own process, cpu${ENDPOINT_CPU}); fresh gateway per listener`,
    );
    const hostile = await LoadGen.start(ENDPOINT_CPU, ctx.env.repo, { ...process.env }, 'bench/hostile.ts');
    try {
      for (const kind of kinds) {
        await forEachListener(ctx, kind, async (gw, l) => {
          const other = gw.listeners.find((x) => x.listener !== l.listener) ?? l;
          const m: Measured = { path: gw.path, listener: l.listener, proxy: l.proxy, cpu: () => cpuSnapshot(ctx, gw) };
          const plan = { concurrency: 64, repeats, sliceMs, soloMs: ctx.sizes.setupDurationMs / 5, warmupTunnels: 512 };
          await measureSetup(ctx, [m], { ...plan, names: { rate: 'attack-quiet-rate', p50: 'attack-quiet-p50', p99: 'attack-quiet-p99', details: 'attack-quiet' } });
          const ports = l.listener === 'http' ? { http: l.proxy, socks: other.proxy } : { http: other.proxy, socks: l.proxy };
          const started = await hostile.request<{ open: number }>(
            {
              type: 'start',
              http: { host: ports.http.host, port: ports.http.port },
              socks: { host: ports.socks.host, port: ports.socks.port },
              stalled,
              garbageWorkers: GARBAGE_WORKERS,
              garbageWaitMs: GARBAGE_WAIT_MS,
            },
            300_000,
          );
          ctx.log(`  ${stalled} stalled connections open (${started.open}); measuring under attack`);
          try {
            await measureSetup(ctx, [m], { ...plan, names: { rate: 'attack-rate', p50: 'attack-p50', p99: 'attack-p99', details: 'attack' } });
          } finally {
            const r = await hostile.request<AttackReport>({ type: 'stop', drainMs: HANDSHAKE_MS + 10_000 }, 120_000);
            addGatewayRow(ctx, 'attack-stalled-left-open', gw, l.listener, r.stalledStillOpen, 'connections');
            addGatewayRow(ctx, 'attack-garbage-left-open', gw, l.listener, r.garbageLeftOpen, 'connections');
            ctx.details.push({ scenario: 'attack-report', path: gw.path, listener: l.listener, handshakeTimeoutMs: HANDSHAKE_MS, ...r });
            ctx.log(
              `  attack: ${r.stalledOpened} stalled opened, ${r.stalledClosedByServer} closed by the gateway after ${r.stalledLifetimeMs.p50}/${r.stalledLifetimeMs.max} ms (p50/max), ${r.stalledStillOpen} left open; ` +
                `${r.garbageSent} garbage, ${r.garbageClosedByServer} closed (p99 ${r.garbageCloseMs.p99} ms), ${r.garbageLeftOpen} left open`,
            );
          }
        });
      }
    } finally {
      await hostile.close();
    }
  },
  check(rows: Row[]) {
    return rows
      .filter((r) => r.path === 'tailgate' && (r.scenario === 'attack-stalled-left-open' || r.scenario === 'attack-garbage-left-open') && r.value !== 0)
      .map((r) => `${r.scenario} is ${r.value} for tailgate/${r.listener}`);
  },
};
