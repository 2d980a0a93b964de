// dropped-under-churn: tunnels cut or refused while registrations churn (gost: user-list PUTs; glider: while it restarts).
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ProxySpec } from '../lib/client.js';
import { addGatewayRow, sleep, withGateway, type Ctx, type Scenario } from '../lib/harness.js';
import { round } from '../lib/measure.js';
import type { TailgateGateway } from '../lib/paths.js';
import { waitPort } from '../lib/procs.js';
import type { ChurnTrafficResult } from '../loadgen.js';
import { gostChurn } from './gost-users.js';

export const churn: Scenario = {
  name: 'dropped-under-churn',
  rows: ['dropped-under-churn'],
  needs: { paths: 'new-keys' },
  async run(ctx, kinds) {
    const seconds = ctx.sizes.churnMs / 1000;
    ctx.log(`dropped-under-churn: ${seconds} s of steady traffic (16 long-lived tunnels + 8 setup loops, 10 ms pace) while registrations churn`);
    const traffic = (proxies: ProxySpec[]) =>
      ctx.loadgen.request<ChurnTrafficResult>(
        { type: 'churn-traffic', proxies, target: ctx.target, longLived: 16, setupWorkers: 8, paceMs: 10, durationMs: ctx.sizes.churnMs },
        ctx.sizes.churnMs + 60_000,
      );
    for (const kind of kinds) {
      if (kind.family === 'tailgate') {
        await withGateway(ctx, kind, async (gw) => {
          const running = traffic(gw.listeners.map((l) => l.proxy));
          const reg = await registrationChurn(ctx, gw, 100, ctx.sizes.churnMs);
          const r = await running;
          for (const [i, st] of r.perProxy.entries()) {
            const listener = gw.listeners[i]!.listener;
            addGatewayRow(ctx, 'dropped-under-churn', gw, listener, st.tunnelsCut + st.setupFailures, 'tunnels');
            ctx.details.push({ scenario: 'dropped-under-churn', path: gw.path, listener, ...st, registrations: reg });
          }
        });
      } else if (kind.family === 'gost') {
        await withGateway(ctx, { path: kind.path, start: kind.startWithApi }, (gw) => gostChurn(ctx, gw, (g) => traffic(g.listeners.map((l) => l.proxy))));
      } else if (kind.family === 'glider') {
        // The glider equivalent of a registration is a restart with a new command line; 100 of them per
        // second is not possible, so: the same traffic, one restart in the middle, and what it cut.
        await withGateway(ctx, kind, async (gw) => {
          const running = traffic(gw.listeners.map((l) => l.proxy));
          await sleep(ctx.sizes.churnMs / 2);
          const t0 = performance.now();
          await gw.restart(ctx.env.key);
          await waitPort(gw.ports.http, 10_000, gw.proc);
          const restartMs = performance.now() - t0;
          const r = await running;
          for (const [i, st] of r.perProxy.entries()) {
            const listener = gw.listeners[i]!.listener;
            addGatewayRow(ctx, 'dropped-under-churn', gw, listener, st.tunnelsCut + st.setupFailures, 'tunnels');
            ctx.details.push({ scenario: 'dropped-under-churn', path: 'glider', listener, how: '1 restart mid-run (no API; 100 restarts/s impossible)', restartMs: round(restartMs, 1), ...st });
          }
        });
      }
    }
  },
  // This checkout's tailgate must drop nothing; an older baseline is measured, not judged.
  check: (rows) =>
    rows.filter((r) => r.scenario === 'dropped-under-churn' && r.path === 'tailgate' && r.value !== 0).map((r) => `${r.value} tunnels dropped under churn on ${r.listener}`),
};

/** POSTs `perSecond` registrations per second for `ms`, paced on a fixed schedule, at most 64 in flight. */
async function registrationChurn(ctx: Ctx, gw: TailgateGateway, perSecond: number, ms: number) {
  const total = Math.round((perSecond * ms) / 1000);
  const interval = 1000 / perSecond;
  const tag = randomBytes(4).toString('hex');
  let ok = 0;
  let failed = 0;
  let skipped = 0;
  let inFlight = 0;
  const latencies: number[] = [];
  const errors: string[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (inFlight >= 64) {
      skipped++;
      continue;
    }
    // Every tenth registration re-registers the key the traffic uses (same binding): the case most
    // likely to disturb open tunnels. The rest bind fresh keys.
    const key = i % 10 === 9 ? ctx.env.key : `churn-${tag}-${i}`;
    inFlight++;
    const t = performance.now();
    pending.push(
      fetch(`${gw.apiUrl}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.adminToken}` },
        body: JSON.stringify({ key, ip: ctx.env.device.host, port: ctx.env.device.port }),
        signal: AbortSignal.timeout(5_000),
      })
        .then(async (res) => {
          await res.arrayBuffer();
          if (res.ok) ok++;
          else {
            failed++;
            if (errors.length < 5) errors.push(`HTTP ${res.status}`);
          }
          latencies.push(performance.now() - t);
        })
        .catch((err: Error) => {
          failed++;
          if (errors.length < 5) errors.push(err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message);
        })
        .finally(() => inFlight--),
    );
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    attempted: total,
    ok,
    failed,
    skippedBackpressure: skipped,
    perSecondAchieved: round(ok / elapsed, 1),
    p50Ms: round(latencies[Math.floor(latencies.length * 0.5)] ?? NaN, 2),
    p99Ms: round(latencies[Math.floor(latencies.length * 0.99)] ?? NaN, 2),
    errors,
  };
}
