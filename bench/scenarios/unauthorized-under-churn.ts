// unauthorized-under-churn: while keys are added and removed at 100 changes a second, clients whose key must be
// refused try to open tunnels, and what gets through is counted. Rows per listener:
//   unauthorized-attempts     tunnels tried with a key that must be refused;
//   unauthorized-under-churn  of those, tunnels the gateway said were up (0 for a gateway whose key check holds);
//   unauthorized-refused      of those, refused by the key check as the client saw it (HTTP 407, SOCKS5 auth status),
//                             less what tailgate's brute-force throttle answered in its place;
//   unauthorized-throttled    tailgate only: attempts its per-address throttle refused without a lookup (its own
//                             counter: over SOCKS5 the client cannot tell the two apart).
// And per gateway, key-changes-per-second: the key additions and removals a second the API achieved of the 200 asked.
// Three kinds of refused key, all counted in both rows (the details keep them apart):
//   never     a key that was never valid, tried without a pause by two loops per listener in the load generator;
//   revoked   a key that worked and was revoked just before the churn began, tried the same way;
//   just-revoked  each key the churn removes, tried once by the orchestrator as soon as the removal is answered.
// Every attempt comes from a loopback address of its own, so tailgate's per-address throttle of failed credentials
// (on at its default) never answers in place of the key check.
// tailgate: POST /keys and DELETE /keys/:id, 100 of each a second. gost: PUT /config/authers/<name> with the whole
// new list, 100 a second, each adding one key and removing one; then, gost only, the state its sources show as open:
// the auther the handlers name is deleted (`unauthorized-auther-missing*` rows) and re-created. glider takes users
// only on its command line: a restart that replaces the user, mid-run, is its one change.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { openTunnel, type ProxySpec } from '../lib/client.js';
import type { GostApiGateway } from '../lib/gost.js';
import { addGatewayRow, sleep, withGateway, type Ctx, type Scenario } from '../lib/harness.js';
import { round } from '../lib/measure.js';
import type { GliderGateway, RunningGateway, TailgateGateway } from '../lib/paths.js';
import { waitPort } from '../lib/procs.js';
import type { Row } from '../lib/report.js';
import { countRefusal, type UnauthorizedCount } from '../lib/unauthorized.js';
import type { UsableResult } from '../loadgen.js';
import { gostListChurn } from './gost-users.js';

const CHANGES_PER_SECOND = 100;
/** A churn key is removed this many ticks after it was added. */
const KEY_LIFETIME_TICKS = 5;
const WORKERS = 2;
/** At most this many just-revoked probes in flight from the orchestrator. */
const PROBES_IN_FLIGHT = 16;
const MISSING_AUTHER_MS = 1_000;

interface Probe {
  listener: string;
  attempts: number;
  through: number;
  refused: number;
  refusedAs: Record<string, number>;
  otherErrors: number;
  skipped: number;
  errors: string[];
}

/** Tries each key the churn has just removed once, on alternate listeners, from addresses of its own (127.78.x.y). */
class JustRevoked {
  private n = 0;
  private inFlight = 0;
  private readonly pending: Promise<void>[] = [];
  readonly byListener = new Map<string, Probe>();

  constructor(
    private readonly ctx: Ctx,
    private readonly proxies: { listener: string; proxy: ProxySpec }[],
  ) {
    for (const p of proxies) this.byListener.set(p.listener, { listener: p.listener, attempts: 0, through: 0, refused: 0, refusedAs: {}, otherErrors: 0, skipped: 0, errors: [] });
  }

  probe(key: string): void {
    const i = this.n++;
    const { listener, proxy } = this.proxies[i % this.proxies.length]!;
    const st = this.byListener.get(listener)!;
    if (this.inFlight >= PROBES_IN_FLIGHT) {
      st.skipped++;
      return;
    }
    this.inFlight++;
    st.attempts++;
    const j = i % (254 * 256);
    const localAddress = `127.78.${Math.floor(j / 254)}.${(j % 254) + 1}`;
    this.pending.push(
      openTunnel({ ...proxy, key, localAddress }, this.ctx.target, 5_000)
        .then(
          (socket) => {
            st.through++;
            socket.destroy();
          },
          (err: Error & { stage?: string }) => {
            if (err.stage === 'rejected' || err.stage === 'handshake') {
              st.refused++;
              countRefusal(st.refusedAs, err);
            } else {
              st.otherErrors++;
              if (st.errors.length < 5) st.errors.push(err.message);
            }
          },
        )
        .finally(() => this.inFlight--),
    );
  }

  async done(): Promise<void> {
    await Promise.all(this.pending);
  }
}

type Hammer = { perClient: UnauthorizedCount[] };

/** The plain listeners: the source address is chosen per attempt there (the TLS client does not take one). */
const plain = (gw: RunningGateway) => gw.listeners.filter((l) => l.listener === 'http' || l.listener === 'socks5');

/** The load generator's never-valid and revoked clients, on every listener, for `ms`. */
function hammer(ctx: Ctx, gw: RunningGateway, keys: { never: string; revoked: string }, ms: number, labels: readonly ('never' | 'revoked')[] = ['never', 'revoked']): Promise<Hammer> {
  const clients = labels.flatMap((label) => plain(gw).map((l) => ({ label: `${label}/${l.listener}`, proxy: { ...l.proxy, key: keys[label] } })));
  return ctx.loadgen.request<Hammer>({ type: 'unauthorized', clients, target: ctx.target, workers: WORKERS, durationMs: ms, sourcePrefix: '127.77' }, ms + 60_000);
}

/** The two rows per listener, and the details behind them. */
interface ReportRows {
  attempts: string;
  through: string;
  /** Refusals by the key check itself; absent: not reported (the deleted-auther run). */
  refused?: string;
}

const CHURN_ROWS: ReportRows = { attempts: 'unauthorized-attempts', through: 'unauthorized-under-churn', refused: 'unauthorized-refused' };

/** Refusal counts by kind, added up. */
function addKinds(into: Record<string, number>, from: Record<string, number> | undefined): void {
  for (const [kind, n] of Object.entries(from ?? {})) into[kind] = (into[kind] ?? 0) + n;
}

/**
 * The rows per listener, and the details behind them. `throttled`: tailgate's own count of attempts its brute-force
 * throttle refused, per listener (undefined for a gateway without one).
 */
function report(ctx: Ctx, gw: RunningGateway, h: Hammer, probes: JustRevoked | undefined, extra: Record<string, unknown>, rows: ReportRows = CHURN_ROWS, throttled?: Record<string, number>): void {
  for (const l of plain(gw)) {
    const mine = h.perClient.filter((c) => c.label.endsWith(`/${l.listener}`));
    const probe = probes?.byListener.get(l.listener);
    const attempts = mine.reduce((n, c) => n + c.attempts, 0) + (probe?.attempts ?? 0);
    const through = mine.reduce((n, c) => n + c.through, 0) + (probe?.through ?? 0);
    const seen: Record<string, number> = {};
    for (const c of mine) addKinds(seen, c.refusedAs);
    addKinds(seen, probe?.refusedAs);
    addGatewayRow(ctx, rows.attempts, gw, l.listener, attempts, 'tunnels');
    addGatewayRow(ctx, rows.through, gw, l.listener, through, 'tunnels');
    // A throttled HTTP client sees 429, a throttled SOCKS5 client the same auth failure as a wrong key.
    const throttledHere = throttled?.[l.listener] ?? 0;
    const byKeyCheck = (seen['http 407'] ?? 0) + Math.max(0, (seen['socks5 auth'] ?? 0) - (l.listener === 'socks5' ? throttledHere : 0));
    if (rows.refused !== undefined) addGatewayRow(ctx, rows.refused, gw, l.listener, byKeyCheck, 'tunnels');
    if (throttled !== undefined) addGatewayRow(ctx, 'unauthorized-throttled', gw, l.listener, throttledHere, 'tunnels');
    if (through > 0) ctx.log(`  ! ${gw.path}/${l.listener}: ${through} of ${attempts} tunnels with a refused key got through`);
    ctx.details.push({ scenario: rows.through, path: gw.path, listener: l.listener, refusedAs: seen, throttled: throttled?.[l.listener], clients: mine, justRevoked: probe, ...extra });
  }
}

/** tailgate's tailgate_auth_throttled_total per listener, from its /metrics. */
async function throttledCounts(gw: TailgateGateway): Promise<Record<string, number>> {
  const res = await fetch(`${gw.apiUrl}/metrics`, { headers: { authorization: `Bearer ${gw.adminToken}` }, signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
  const out: Record<string, number> = {};
  for (const m of (await res.text()).matchAll(/^tailgate_auth_throttled_total\{listener="([^"]+)"\} (\S+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

export const unauthorizedUnderChurn: Scenario = {
  name: 'unauthorized-under-churn',
  rows: ['unauthorized-attempts', 'unauthorized-under-churn', 'unauthorized-refused', 'unauthorized-throttled', 'key-changes-per-second'],
  needs: { paths: 'new-keys' },
  async run(ctx, kinds) {
    const ms = ctx.sizes.churnMs;
    ctx.log(
      `unauthorized-under-churn: ${ms / 1000} s of ${CHANGES_PER_SECOND} key additions + removals a second while a never-valid and a revoked key are tried ` +
        `without pause (${WORKERS} loops per key and listener) and every removed key once, right after its removal`,
    );
    const keys = { never: `never-${randomBytes(12).toString('hex')}`, revoked: `revoked-${randomBytes(12).toString('hex')}` };
    for (const kind of kinds) {
      if (kind.family === 'tailgate') await withGateway(ctx, kind, (gw) => tailgateRun(ctx, gw, keys, ms));
      else if (kind.family === 'gost') await withGateway(ctx, { path: kind.path, start: kind.startWithApi }, (gw) => gostRun(ctx, gw, keys, ms));
      else if (kind.family === 'glider') await withGateway(ctx, kind, (gw) => gliderRun(ctx, gw, keys, ms));
    }
  },
  // This checkout's tailgate must let nothing through, and must have been tried; other paths are measured, not judged.
  check: (rows: Row[]) => {
    const mine = rows.filter((r) => r.path === 'tailgate');
    return [
      ...mine.filter((r) => r.scenario === 'unauthorized-under-churn' && r.value !== 0).map((r) => `${r.value} tunnels with a refused key got through tailgate/${r.listener}`),
      ...mine.filter((r) => r.scenario === 'unauthorized-attempts' && !(r.value > 0)).map((r) => `no unauthorized attempt was made on tailgate/${r.listener}`),
    ];
  },
};

async function usable(ctx: Ctx, gw: RunningGateway, key: string): Promise<void> {
  for (const l of plain(gw)) {
    const r = await ctx.loadgen.request<UsableResult>({ type: 'until-usable', proxy: { ...l.proxy, key }, target: ctx.target, deadlineMs: 10_000 }, 30_000);
    if (!r.ok) throw new Error(`${gw.path}/${l.listener}: the key to be revoked never worked: ${r.lastError}`);
  }
}

async function tailgateRun(ctx: Ctx, gw: TailgateGateway, keys: { never: string; revoked: string }, ms: number): Promise<void> {
  const call = async <T>(method: 'GET' | 'POST' | 'DELETE', route: string, body?: object): Promise<T> => {
    const res = await fetch(`${gw.apiUrl}${route}`, {
      method,
      headers: { ...(body ? { 'content-type': 'application/json' } : {}), authorization: `Bearer ${gw.adminToken}` },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(5_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route} answered ${res.status}: ${text.slice(0, 200)}`);
    return JSON.parse(text) as T;
  };
  const devices = await call<{ id: number; ip: string; port: number }[]>('GET', '/devices');
  const device = devices.find((d) => d.port === ctx.env.device.port);
  if (!device) throw new Error(`no device on port ${ctx.env.device.port} among ${devices.length}`);
  const revoked = await call<{ id: number }>('POST', '/keys', { device: device.id, key: keys.revoked });
  await usable(ctx, gw, keys.revoked);
  await call('DELETE', `/keys/${revoked.id}`);

  const probes = new JustRevoked(ctx, plain(gw));
  const tag = randomBytes(4).toString('hex');
  const running = hammer(ctx, gw, keys, ms);
  // Each tick adds one key and removes the oldest one added at least KEY_LIFETIME_TICKS before (two when an add
  // answered late left one behind): two API calls a tick, at most 64 in flight.
  const total = Math.round((CHANGES_PER_SECOND * ms) / 1000);
  const added: { tick: number; id: number }[] = [];
  const st = { adds: 0, removes: 0, failed: 0, skippedBackpressure: 0, errors: [] as string[] };
  let inFlight = 0;
  const pending: Promise<void>[] = [];
  const fire = (what: () => Promise<void>) => {
    if (inFlight >= 64) {
      st.skippedBackpressure++;
      return;
    }
    inFlight++;
    pending.push(
      what()
        .catch((err: Error) => {
          st.failed++;
          if (st.errors.length < 5) st.errors.push(err.message);
        })
        .finally(() => inFlight--),
    );
  };
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = start + i * (1000 / CHANGES_PER_SECOND) - performance.now();
    if (wait > 0) await sleep(wait);
    const key = `churn-${tag}-${i}`;
    fire(async () => {
      const { id } = await call<{ id: number }>('POST', '/keys', { device: device.id, key });
      added.push({ tick: i, id });
      st.adds++;
    });
    for (let r = 0; r < 2 && added.length > 0 && added[0]!.tick <= i - KEY_LIFETIME_TICKS; r++) {
      const old = added.shift()!;
      fire(async () => {
        await call('DELETE', `/keys/${old.id}`);
        st.removes++;
        probes.probe(`churn-${tag}-${old.tick}`);
      });
    }
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - start) / 1000;
  const h = await running;
  await probes.done();
  report(ctx, gw, h, probes, { how: 'POST /keys + DELETE /keys/:id', changes: { ...st, addsPerSecond: round(st.adds / elapsed, 1), removesPerSecond: round(st.removes / elapsed, 1) } }, CHURN_ROWS, await throttledCounts(gw));
  addGatewayRow(ctx, 'key-changes-per-second', gw, undefined, round((st.adds + st.removes) / elapsed, 1), 'changes/s');
}

async function gostRun(ctx: Ctx, gw: GostApiGateway, keys: { never: string; revoked: string }, ms: number): Promise<void> {
  const users = new Set([ctx.env.key, keys.revoked]);
  await gw.setUsers(users);
  await usable(ctx, gw, keys.revoked);
  users.delete(keys.revoked);
  await gw.setUsers(users);

  const probes = new JustRevoked(ctx, plain(gw));
  const tag = randomBytes(4).toString('hex');
  const removedAt = new Map<number, string>();
  const running = hammer(ctx, gw, keys, ms);
  // Key changes a PUT that was answered carried: its ticks' additions, and their removals.
  let applied = 0;
  const churnStart = performance.now();
  const churn = await gostListChurn(
    gw,
    users,
    CHANGES_PER_SECOND,
    ms,
    (i) => {
      users.add(`churn-${tag}-${i}`);
      const old = i - KEY_LIFETIME_TICKS;
      if (old >= 0 && users.delete(`churn-${tag}-${old}`)) removedAt.set(i, `churn-${tag}-${old}`);
    },
    (ticks) => {
      for (const t of ticks) {
        const key = removedAt.get(t);
        applied += key === undefined ? 1 : 2;
        if (key !== undefined) probes.probe(key);
        removedAt.delete(t);
      }
    },
  );
  const churnSeconds = (performance.now() - churnStart) / 1000;
  const h = await running;
  await probes.done();
  report(ctx, gw, h, probes, { how: 'PUT /config/authers/<name>: one key added and one removed per PUT', changes: churn });
  addGatewayRow(ctx, 'key-changes-per-second', gw, undefined, round(applied / churnSeconds, 1), 'changes/s');

  // The auther the handlers name, deleted: what gost does then, measured with the never-valid key.
  await gw.deleteAuther();
  try {
    const missing = await hammer(ctx, gw, keys, MISSING_AUTHER_MS, ['never']);
    report(ctx, gw, missing, undefined, { how: 'DELETE /config/authers/<name> while the handlers still name it' }, { attempts: 'unauthorized-auther-missing-attempts', through: 'unauthorized-auther-missing' });
  } finally {
    await gw.createAuther(users);
  }
}

async function gliderRun(ctx: Ctx, gw: GliderGateway, keys: { never: string; revoked: string }, ms: number): Promise<void> {
  // glider has one user per listener, on its command line: the revoked key is the one a restart replaced.
  const restart = async (key: string) => {
    const t0 = performance.now();
    await gw.restart(key);
    await waitPort(gw.ports.http, 10_000, gw.proc);
    await waitPort(gw.ports.socks, 10_000, gw.proc);
    return round(performance.now() - t0, 1);
  };
  await restart(keys.revoked);
  await usable(ctx, gw, keys.revoked);
  const restartsMs = [await restart(ctx.env.key)];
  const running = hammer(ctx, gw, keys, ms);
  await sleep(ms / 2);
  restartsMs.push(await restart(`churn-${randomBytes(8).toString('hex')}`));
  const h = await running;
  report(ctx, gw, h, undefined, { how: 'one restart with a new user mid-run (no API; 100 restarts/s impossible)', restartsMs });
}
