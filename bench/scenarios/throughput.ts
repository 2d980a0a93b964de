// throughput-1 and throughput-16: MiB/s through 1 / 16 tunnels, half up then half down.
import { mib, withAllVariants, type Scenario } from '../lib/harness.js';
import { measureThroughput } from '../lib/measure.js';

export function throughput(tunnels: 1 | 16): Scenario {
  const scenario = `throughput-${tunnels}`;
  return {
    name: scenario,
    rows: [scenario],
    needs: { paths: 'all' },
    async run(ctx, kinds) {
      const repeats = ctx.sizes.throughputRepeats;
      ctx.log(`${scenario}: ${mib(ctx.sizes.throughputBytesEachWay * 2)} MiB per run (half up, half down) over ${tunnels} tunnel(s); median of ${repeats} runs, interleaved across paths`);
      await withAllVariants(ctx, kinds, (paths) => measureThroughput(ctx, paths, { scenario, tunnels, bytesEachWay: ctx.sizes.throughputBytesEachWay, repeats }));
    },
  };
}
