// Scenario 5: tailgate vs tailscaled's own SOCKS5 server to the same device over a real (offline) tailnet,
// in a private network namespace of its own (bench/tailnet.ts); tailgate in userspace mode (path `tailgate`) and in
// kernel mode (`tailgate-kernel`). It starts its own tailgate there, from this
// checkout: an older build from --baseline-ref would need a second tailnet node and its own approval of the
// device, so it has no baseline path.
import { ENDPOINT_CPU, PROXY_CPU, type Scenario } from '../lib/harness.js';
import { ensureGoDevice } from '../lib/paths.js';
import { runTailnetOverhead } from '../tailnet.js';

/**
 * Kernel mode's listeners (path `tailgate-kernel`): BENCH_TAILNET_KERNEL=http,socks5 names them, `none` leaves kernel
 * mode out. By default the HTTP one alone, in full and --quick runs: each listener costs the scenario about 35 s of a
 * full run, and the whole `npm run bench` has 10 minutes.
 */
function kernelPlan(): { kernel: boolean; kernelListeners: ('http' | 'socks5')[] } {
  const given = process.env.BENCH_TAILNET_KERNEL;
  const listeners = given === undefined || given === '' ? ['http'] : given === 'none' ? [] : given.split(',');
  for (const l of listeners) if (l !== 'http' && l !== 'socks5') throw new Error(`BENCH_TAILNET_KERNEL: unknown listener ${l} (http, socks5 or none)`);
  return { kernel: listeners.length > 0, kernelListeners: listeners as ('http' | 'socks5')[] };
}

const ROWS = ['tailnet-throughput-1', 'tailnet-throughput-16', 'tailnet-setup-rate', 'tailnet-setup-p50', 'tailnet-setup-p99'];

export const tailnetOverhead: Scenario = {
  name: 'tailnet-overhead',
  rows: ROWS,
  needs: { paths: 'tailgate', root: 'it creates network namespaces (unshare -n) for the offline tailnet' },
  async run(ctx) {
    ctx.log('tailnet-overhead: tailgate vs tailscaled’s own SOCKS5 to the same device, real headscale + tailscaled in a private network namespace');
    try {
      const outcome = await runTailnetOverhead(
        {
          repo: ctx.env.repo,
          logDir: ctx.env.logDir,
          deviceBin: await ensureGoDevice(ctx.env.repo),
          proxyCpu: PROXY_CPU,
          endpointCpu: ENDPOINT_CPU,
          bytesEachWay: ctx.sizes.tailnetBytesEachWay,
          throughputRepeats: ctx.sizes.tailnetThroughputRepeats,
          setupRepeats: ctx.sizes.tailnetSetupRepeats,
          setupSliceMs: ctx.sizes.tailnetSetupSliceMs,
          setupConcurrency: 64,
          setupWarmupTunnels: ctx.sizes.tailnetSetupWarmupTunnels,
          ...kernelPlan(),
        },
        (line) => ctx.log(`  ${line}`),
      );
      ctx.rows.push(...outcome.rows);
      ctx.details.push(...outcome.details);
      Object.assign(ctx.versions, outcome.versions);
    } catch (err) {
      ctx.log(`  ! tailnet-overhead: ${(err as Error).message}`);
      ctx.details.push({ scenario: 'tailnet-overhead', error: (err as Error).message });
    }
  },
  check: (rows) => [
    ...ROWS.filter((s) => !rows.some((r) => r.scenario === s && r.path === 'tailscale-socks5')).map((s) => `no ${s} for the tailscale-socks5 baseline`),
    ...kernelPlan().kernelListeners.flatMap((l) =>
      ROWS.filter((s) => !rows.some((r) => r.scenario === s && r.path === 'tailgate-kernel' && r.listener === l)).map((s) => `no ${s} for tailgate-kernel/${l}`),
    ),
  ],
};
