// idle-rss-per-tunnel: what one idle tunnel costs the gateway process in resident memory.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { addGatewayRow, forEachListener, sleep, type Scenario } from '../lib/harness.js';
import { round } from '../lib/measure.js';
import { rssKiB } from '../lib/procs.js';
import type { SetupResult } from '../loadgen.js';

export const idle: Scenario = {
  name: 'idle-rss-per-tunnel',
  rows: ['idle-rss-per-tunnel'],
  needs: { paths: 'gateway' },
  async run(ctx, kinds) {
    const n = ctx.sizes.idleTunnels;
    ctx.log(`idle-rss-per-tunnel: ${n} idle tunnels per listener, fresh gateway process each`);
    for (const kind of kinds) {
      await forEachListener(ctx, kind, async (gw, l) => {
        const pid = gw.proc!.pid;
        // Warm-up, so lazily created state (pools, caches, JIT) is in the baseline, not in the per-tunnel figure.
        await ctx.loadgen.request<SetupResult>({ type: 'setup', proxy: l.proxy, target: ctx.target, concurrency: 16, maxCount: 256, durationMs: 5_000, warmup: 0 }, 60_000);
        await sleep(1_000);
        const rss0 = rssKiB(pid);
        const r = await ctx.loadgen.request<{ opened: number; failed: number; ms: number; errors: string[] }>(
          { type: 'idle-open', proxy: l.proxy, target: ctx.target, count: n, concurrency: 128, timeoutMs: 120_000, maxFailures: 200 },
          180_000,
        );
        await sleep(2_000);
        const rss1 = rssKiB(pid);
        if (ctx.env.profileDir && kind.family === 'tailgate') await heapSnapshot(pid, ctx.env.profileDir);
        const closed = await ctx.loadgen.request<{ closed: number; stillOpen: number }>({ type: 'idle-close' }, 60_000);
        if (r.opened > 0) addGatewayRow(ctx, 'idle-rss-per-tunnel', gw, l.listener, (rss1 - rss0) / r.opened, 'KiB');
        if (r.failed > 0) ctx.log(`  ! ${gw.path}/${l.listener}: ${r.failed} tunnels failed to open, e.g. ${r.errors.join('; ')}`);
        ctx.details.push({
          scenario: 'idle-rss-per-tunnel',
          path: gw.path,
          listener: l.listener,
          opened: r.opened,
          failed: r.failed,
          openSeconds: round(r.ms / 1000),
          rssBeforeKiB: rss0,
          rssAfterKiB: rss1,
          cutWhileIdle: closed.closed - closed.stillOpen,
        });
      });
    }
  },
};

/** Asks a tailgate started with --heapsnapshot-signal for a snapshot and waits until it is written. */
async function heapSnapshot(pid: number, dir: string): Promise<void> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    await sleep(500);
    const fresh = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    // The file grows while V8 writes it; done when its size holds still.
    if (fresh.length > 0) {
      const f = path.join(dir, fresh[0]!);
      const a = statSync(f).size;
      await sleep(1_000);
      if (statSync(f).size === a && a > 0) return;
    }
  }
}
