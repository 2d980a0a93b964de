// setup-rate, setup-p50, setup-p99: tunnels per second at concurrency 64 and their setup latencies; setup-cpu: the
// gateway's CPU per tunnel in those slices (median).
import { withAllVariants, type Scenario } from '../lib/harness.js';
import { measureSetup } from '../lib/measure.js';

export const setup: Scenario = {
  name: 'setup',
  rows: ['setup-rate', 'setup-p50', 'setup-p99', 'setup-cpu'],
  needs: { paths: 'all' },
  async run(ctx, kinds) {
    const repeats = ctx.sizes.setupRepeats;
    const sliceMs = ctx.sizes.setupDurationMs / repeats;
    ctx.log(`setup: concurrency 64, ${repeats} x ${sliceMs} ms per path interleaved across paths, the median slice by rate reported (tunnel + auth + device CONNECT + one small request, key cached)`);
    await withAllVariants(ctx, kinds, async (paths) => {
      await measureSetup(ctx, paths, {
        names: { rate: 'setup-rate', p50: 'setup-p50', p99: 'setup-p99', details: 'setup', cpu: 'setup-cpu' },
        concurrency: 64,
        repeats,
        sliceMs,
        soloMs: ctx.sizes.setupDurationMs / 5,
        warmupTunnels: 512,
      });
    });
  },
};
