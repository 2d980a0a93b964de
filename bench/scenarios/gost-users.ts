// gost's side of the scenarios that add users while it runs (register-to-usable, dropped-under-churn,
// unauthorized-under-churn): through its web API, `PUT /config/authers/<name>` with the whole new user list, on a
// gost started from a config file whose handlers name that auther (bench/lib/gost.ts, startWithApi).
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { GostApiGateway } from '../lib/gost.js';
import { addGatewayRow, median, sleep, type Ctx } from '../lib/harness.js';
import { round } from '../lib/measure.js';
import type { ChurnTrafficResult, RequestThenUsableResult } from '../loadgen.js';

/** register-to-usable: a PUT of the list with one new key in it, answered, to the first tunnel + request with that key. */
export async function gostRegisterToUsable(ctx: Ctx, gw: GostApiGateway): Promise<void> {
  const keys = [ctx.env.key];
  const samples = new Map<string, number[]>(gw.listeners.map((l) => [l.listener, []]));
  const errors: string[] = [];
  for (let i = 0; i < ctx.sizes.r2uTrials; i++) {
    const l = gw.listeners[i % gw.listeners.length]!;
    const key = `bench-r2u-${randomBytes(12).toString('hex')}`;
    keys.push(key);
    // The load generator sends the PUT itself, so the time from its answer to the first tunnel is read on one clock.
    const r = await ctx.loadgen.request<RequestThenUsableResult>(
      { type: 'request-then-usable', request: gw.usersRequest(keys), proxy: { ...l.proxy, key }, target: ctx.target, deadlineMs: 5_000 },
      30_000,
    );
    if (Number.isFinite(r.ms)) samples.get(l.listener)!.push(r.ms);
    else if (errors.length < 5) errors.push(r.error);
  }
  for (const l of gw.listeners) {
    const s = samples.get(l.listener)!;
    if (s.length > 0) addGatewayRow(ctx, 'register-to-usable', gw, l.listener, median(s), 'ms');
    else ctx.log(`  ! ${gw.path}/${l.listener}: no trial became usable: ${errors.join('; ')}`);
    ctx.details.push({
      scenario: 'register-to-usable',
      path: gw.path,
      listener: l.listener,
      how: `PUT /config/authers/<name> with the whole user list (${keys.length} users at the end), no restart`,
      samplesMs: s.map((v) => round(v, 2)),
      maxMs: s.length > 0 ? round(Math.max(...s), 2) : null,
      errors,
    });
  }
}

export interface ListChurnStats {
  ticks: number;
  puts: number;
  failed: number;
  /** Ticks whose change went out with a later PUT because the previous one was still in flight. */
  coalesced: number;
  perSecondAchieved: number;
  p50Ms: number;
  p99Ms: number;
  maxUsers: number;
  errors: string[];
}

/**
 * `perSecond` list changes a second for `ms`: on each tick `change(i)` edits `users` and the whole list goes out in
 * one PUT. One PUT at a time: the API replaces the list, so two in flight could land in either order (and a second
 * one arriving while the first has unregistered the auther fails as a duplicate). A tick whose PUT would overlap the
 * previous one rides on the next. `afterPut(i)` runs once the PUT carrying tick i's change is answered.
 */
export async function gostListChurn(
  gw: GostApiGateway,
  users: Set<string>,
  perSecond: number,
  ms: number,
  change: (i: number) => void,
  afterPut?: (ticks: number[]) => void,
): Promise<ListChurnStats> {
  const total = Math.round((perSecond * ms) / 1000);
  const interval = 1000 / perSecond;
  let puts = 0;
  let failed = 0;
  let coalesced = 0;
  let maxUsers = users.size;
  let inFlight: Promise<void> | undefined;
  let waiting: number[] = [];
  const latencies: number[] = [];
  const errors: string[] = [];
  const send = () => {
    const carried = waiting;
    waiting = [];
    const t = performance.now();
    maxUsers = Math.max(maxUsers, users.size);
    inFlight = gw
      .setUsers(users)
      .then(
        () => {
          puts++;
          latencies.push(performance.now() - t);
          afterPut?.(carried);
        },
        (err: Error) => {
          failed++;
          if (errors.length < 5) errors.push(err.message);
        },
      )
      .finally(() => (inFlight = undefined));
  };
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = start + i * interval - performance.now();
    if (wait > 0) await sleep(wait);
    change(i);
    waiting.push(i);
    if (inFlight) coalesced++;
    else send();
  }
  while (inFlight) await inFlight;
  if (waiting.length > 0) {
    send();
    await inFlight;
  }
  const perSecondAchieved = round(puts / ((performance.now() - start) / 1000), 1);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => round(latencies[Math.floor(latencies.length * q)] ?? NaN, 2);
  return { ticks: total, puts, failed, coalesced, perSecondAchieved, p50Ms: at(0.5), p99Ms: at(0.99), maxUsers, errors };
}

/**
 * dropped-under-churn: the traffic of tailgate's run while 100 new users a second go in through PUTs (every tenth
 * tick, as tailgate's every tenth re-registration of the traffic key, sends the list unchanged).
 */
export async function gostChurn(ctx: Ctx, gw: GostApiGateway, traffic: (gw: GostApiGateway) => Promise<ChurnTrafficResult>): Promise<void> {
  const tag = randomBytes(4).toString('hex');
  const users = new Set([ctx.env.key]);
  const running = traffic(gw);
  const churn = await gostListChurn(gw, users, 100, ctx.sizes.churnMs, (i) => {
    if (i % 10 !== 9) users.add(`churn-${tag}-${i}`);
  });
  const r = await running;
  for (const [i, st] of r.perProxy.entries()) {
    const listener = gw.listeners[i]!.listener;
    addGatewayRow(ctx, 'dropped-under-churn', gw, listener, st.tunnelsCut + st.setupFailures, 'tunnels');
    ctx.details.push({ scenario: 'dropped-under-churn', path: gw.path, listener, how: 'PUT /config/authers/<name>, 100 list changes/s, one PUT at a time', ...st, registrations: churn });
  }
}
