// setup-under-attack: the well-behaved clients' tunnel setup (as `setup` measures it: concurrency 64, tunnel + auth +
// device CONNECT + one small request) on a fresh gateway, first quiet, then while bench/hostile.ts, a process of its
// own on the endpoint core, keeps a pool of stalled handshakes full (slowloris: every place a handshake can stop, each
// one the gateway closes replaced at once) and floods both ports with garbage at a fixed rate. Rows per listener:
//   attack-quiet-{rate,p50,p99}, attack-{rate,p50,p99}: setup without and with the attack, same gateway process,
//   quiet and attacked slices alternating (the median slice of each, as `setup` reports);
//   attack-stalled-left-open: stalled connections the gateway had not closed by handshake timeout + 10 s after an
//   attack stopped, over all rounds (0 for a gateway whose handshake timeout holds);
//   attack-garbage-left-open: garbage connections not closed within 5 s (half the handshake timeout) of their bytes.
import type { AttackReport } from '../hostile.js';
import { ENDPOINT_CPU, addGatewayRow, cpuSnapshot, forEachListener, type Scenario } from '../lib/harness.js';
import { measureSetup, type Measured } from '../lib/measure.js';
import { LoadGen } from '../lib/procs.js';
import type { Row } from '../lib/report.js';

const PLAIN_LISTENERS = ['http', 'socks5'] as const;
const ATTACKER_ADDRESS = '127.0.0.2';

/** tailgate's default TAILGATE_HANDSHAKE_TIMEOUT_MS, which the bench leaves as it is. */
const HANDSHAKE_MS = 10_000;
// Half the handshake timeout: "at once" told apart from "held until the timeout" even when this shared machine lags by seconds.
const GARBAGE_WAIT_MS = HANDSHAKE_MS / 2;
const GARBAGE_WORKERS = 16;
/** Garbage connections per second: the same flood for every gateway, whatever it does with the garbage. */
const GARBAGE_RATE = 500;

export const setupUnderAttack: Scenario = {
  name: 'setup-under-attack',
  ownRun: true,
  rows: ['attack-quiet-rate', 'attack-quiet-p50', 'attack-quiet-p99', 'attack-rate', 'attack-p50', 'attack-p99', 'attack-stalled-left-open', 'attack-garbage-left-open'],
  needs: { paths: 'both-listeners' },
  async run(ctx, kinds) {
    const stalled = ctx.sizes.attackStalled;
    const repeats = ctx.sizes.setupRepeats;
    const sliceMs = ctx.sizes.setupDurationMs / repeats;
    ctx.log(
      `setup-under-attack: concurrency 64, ${repeats} rounds of a quiet ${sliceMs} ms slice then one with ${stalled} stalled handshakes kept open and ` +
        `${GARBAGE_WORKERS} garbage workers at ${GARBAGE_RATE} connections/s (own process, cpu${ENDPOINT_CPU}), the attack stopped and drained after each; fresh gateway per listener`,
    );
    const hostile = await LoadGen.start(ENDPOINT_CPU, ctx.env.repo, { ...process.env }, 'bench/hostile.ts');
    try {
      for (const kind of kinds) {
        await forEachListener(ctx, kind, async (gw, l) => {
          const other = gw.listeners.find((x) => x.listener !== l.listener) ?? l;
          const ports = l.listener === 'http' ? { http: l.proxy, socks: other.proxy } : { http: other.proxy, socks: l.proxy };
          const cpu = () => cpuSnapshot(ctx, gw);
          const quiet: Measured = { path: gw.path, listener: l.listener, variant: 'quiet', proxy: l.proxy, cpu };
          const attacked: Measured = { path: gw.path, listener: l.listener, variant: 'attacked', proxy: l.proxy, cpu };
          const reports: AttackReport[] = [];
          // Quiet and attacked slices alternate on the same gateway process, so drifting load on this shared machine
          // falls on both; each attack is stopped and drained (the gateway must close its whole pool) before the next
          // quiet slice.
          const within = async <T>(m: Measured, run: () => Promise<T>): Promise<T> => {
            if (m !== attacked) return run();
            await hostile.request<{ open: number }>(
              {
                type: 'start',
                http: { host: ports.http.host, port: ports.http.port },
                socks: { host: ports.socks.host, port: ports.socks.port },
                stalled,
                garbageWorkers: GARBAGE_WORKERS,
                garbageWaitMs: GARBAGE_WAIT_MS,
                garbageRate: GARBAGE_RATE,
                // Not the well-behaved clients' address: the throttle would otherwise refuse them with the attacker.
                localAddress: ATTACKER_ADDRESS,
                key: l.proxy.key,
              },
              300_000,
            );
            try {
              return await run();
            } finally {
              reports.push(await hostile.request<AttackReport>({ type: 'stop', drainMs: HANDSHAKE_MS + 10_000 }, 120_000));
            }
          };
          await measureSetup(ctx, [quiet, attacked], {
            names: (m) =>
              m === quiet
                ? { rate: 'attack-quiet-rate', p50: 'attack-quiet-p50', p99: 'attack-quiet-p99', details: 'attack-quiet' }
                : { rate: 'attack-rate', p50: 'attack-p50', p99: 'attack-p99', details: 'attack' },
            concurrency: 64,
            repeats,
            sliceMs,
            soloMs: ctx.sizes.setupDurationMs / 5,
            warmupTunnels: 512,
            within,
          });
          const total = (f: (r: AttackReport) => number) => reports.reduce((n, r) => n + f(r), 0);
          addGatewayRow(ctx, 'attack-stalled-left-open', gw, l.listener, total((r) => r.stalledStillOpen), 'connections');
          addGatewayRow(ctx, 'attack-garbage-left-open', gw, l.listener, total((r) => r.garbageLeftOpen), 'connections');
          ctx.details.push({ scenario: 'attack-report', path: gw.path, listener: l.listener, handshakeTimeoutMs: HANDSHAKE_MS, stalledPool: stalled, rounds: reports });
          for (const r of reports) {
            ctx.log(
              `  attack round: ${r.stalledOpened} stalled opened, ${r.stalledClosedByServer} closed by the gateway after ${r.stalledLifetimeMs.min}-${r.stalledLifetimeMs.max} ms, ${r.stalledStillOpen} left open; ` +
                `${r.garbageSent} garbage, ${r.garbageClosedByServer} closed (p99 ${r.garbageCloseMs.p99} ms), ${r.garbageLeftOpen} left open`,
            );
          }
          // The attacker speaks the plain protocols: a TLS listener would hold its bytes as a TLS record in progress.
        }, PLAIN_LISTENERS);
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
