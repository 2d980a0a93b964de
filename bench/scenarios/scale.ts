// The `scale` group (issue 14): the gateway under test gets both cores (taskset), tailgate with one and with two
// worker processes against gost and glider on the same two cores (Go sizes GOMAXPROCS to the affinity mask), for
// throughput through 16 tunnels and for the setup rate. The device stand-in stays on cpu0 and the load generator and
// sink on cpu1, as in every other scenario: the gateway competes with them for the cores it is given.
//   scale-throughput-16   MiB/s through 16 tunnels, as throughput-16
//   scale-setup-rate      tunnels per second at concurrency 64, as setup-rate (with scale-setup-p50, -p99, -cpu)
// Paths: tailgate-w1, tailgate-w2 (this checkout's tailgate, TAILGATE_WORKERS=1 and 2), gost, glider.
import { ENDPOINT_CPU, PROXY_CPU, withAllEntrants, type Ctx, type Entrant, type Scenario } from '../lib/harness.js';
import { measureSetup, measureThroughput } from '../lib/measure.js';
import type { GatewayKind, Listener } from '../lib/paths.js';

export const SCALE_CPUS = `${PROXY_CPU},${ENDPOINT_CPU}`;
const GROUP = 'scale';
const TAILGATE_WORKERS = [1, 2] as const;
/** The listeners every path of the group has; tailgate's TLS ones are measured elsewhere. */
const LISTENERS: readonly Listener[] = ['http', 'socks5'];
const TAILGATE_PATHS = TAILGATE_WORKERS.map((n) => `tailgate-w${n}`);

/**
 * This checkout's tailgate once per worker count, then gost and glider, every one of them on both cores, one process
 * per path serving both listeners: a tailgate with workers takes seconds to start on this busy machine, and the group
 * has to stay short.
 */
function entrants(ctx: Ctx, kinds: GatewayKind[]): Entrant[] {
  const env = { ...ctx.env, proxyCpu: SCALE_CPUS };
  return kinds.flatMap((kind): Entrant[] =>
    kind.family === 'tailgate'
      ? TAILGATE_WORKERS.map((workers) => ({ kind, path: `tailgate-w${workers}`, env: { ...env, tailgateWorkers: workers }, listeners: LISTENERS, oneProcess: true }))
      : [{ kind, path: kind.path, env, listeners: LISTENERS, oneProcess: true }],
  );
}

export const scaleThroughput: Scenario = {
  name: 'scale-throughput-16',
  group: GROUP,
  rows: ['scale-throughput-16'],
  needs: { paths: 'tailgate-gost-glider' },
  checkPaths: TAILGATE_PATHS,
  async run(ctx, kinds) {
    const bytesEachWay = ctx.sizes.scaleBytesEachWay;
    const repeats = ctx.sizes.scaleThroughputRepeats;
    ctx.log(`scale-throughput-16: gateways on cpus ${SCALE_CPUS}; ${(bytesEachWay * 2) / (1 << 20)} MiB per run (half up, half down) over 16 tunnels; median of ${repeats} runs, interleaved across paths`);
    await withAllEntrants(ctx, entrants(ctx, kinds), (paths) => measureThroughput(ctx, paths, { scenario: 'scale-throughput-16', tunnels: 16, bytesEachWay, repeats }), { together: true });
  },
};

export const scaleSetup: Scenario = {
  name: 'scale-setup',
  group: GROUP,
  rows: ['scale-setup-rate', 'scale-setup-p50', 'scale-setup-p99', 'scale-setup-cpu'],
  needs: { paths: 'tailgate-gost-glider' },
  checkPaths: TAILGATE_PATHS,
  async run(ctx, kinds) {
    const repeats = ctx.sizes.scaleSetupRepeats;
    const sliceMs = ctx.sizes.scaleSetupSliceMs;
    ctx.log(`scale-setup: gateways on cpus ${SCALE_CPUS}; concurrency 64, ${repeats} x ${sliceMs} ms per path interleaved across paths, the median slice by rate reported`);
    await withAllEntrants(ctx, entrants(ctx, kinds), async (paths) => {
      await measureSetup(ctx, paths, {
        names: { rate: 'scale-setup-rate', p50: 'scale-setup-p50', p99: 'scale-setup-p99', details: 'scale-setup', cpu: 'scale-setup-cpu' },
        concurrency: 64,
        repeats,
        sliceMs,
        soloMs: sliceMs / 2,
        warmupTunnels: ctx.sizes.scaleSetupWarmupTunnels,
      });
    }, { together: true });
  },
};
