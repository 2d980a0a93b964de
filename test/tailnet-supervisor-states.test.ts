// The supervisor's state machine without tailscaled and without waiting: a fake clock, and fakes for what the
// supervisor reads and drives (the tailscaled process, its LocalAPI, `tailscale up`). These are the state machine's
// inputs; the real processes are exercised by tailnet-supervisor.test.ts and tailnet.e2e.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import type { TailnetConfig } from '../src/config.js';
import type { Clock } from '../src/tailnet/clock.js';
import { next, Run, type SupervisorState } from '../src/tailnet/lifecycle.js';
import type { LocalPeerStatus, LocalStatus } from '../src/tailnet/localapi.js';
import { TailscaledSupervisor, type SupervisorOptions } from '../src/tailnet/supervisor.js';
import type { TailscaledApi } from '../src/tailnet/tailscaled-api.js';
import type { ExitStatus, TailscaledProcess } from '../src/tailnet/tailscaled-process.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tailgate-states-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Lets every promise chain that does not wait for a timer run to its end. */
async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; callback: () => void }>();

  now(): number {
    return this.t;
  }

  schedule(ms: number, callback: () => void): () => void {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), callback });
    return () => void this.timers.delete(id);
  }

  /** Moves time forward by `ms`, firing the timers that fall due in order, each at its own time. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    for (;;) {
      await flush();
      let due: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= target && (due === undefined || entry[1].at < due[1].at)) due = entry;
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].callback();
    }
    this.t = target;
    await flush();
  }
}

let nextPid = 1000;

class FakeTailscaled implements TailscaledProcess {
  readonly pid = nextPid++;
  alive = true;
  readonly signals: string[] = [];
  readonly exited: Promise<ExitStatus>;
  private resolveExit!: (status: ExitStatus) => void;

  constructor(
    readonly args: string[],
    private readonly ignoresSigterm: boolean,
  ) {
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  kill(signal: 'SIGTERM' | 'SIGKILL'): void {
    this.signals.push(signal);
    if (signal === 'SIGKILL' || !this.ignoresSigterm) this.exit(null, signal);
  }

  exit(code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.alive) return;
    this.alive = false;
    this.resolveExit({ code, signal });
  }
}

function peer(ip: string, online: boolean): LocalPeerStatus {
  return { HostName: `device-${ip}`, TailscaleIPs: [ip], Online: online, Relay: online ? 'r1' : '', Addrs: null };
}

/** tailscaled's LocalAPI as the test sets it up; it answers only while the latest fake tailscaled is alive. */
class FakeLocalApi implements TailscaledApi {
  backendState = 'NeedsLogin';
  selfOnline = false;
  selfIps = ['100.64.0.1'];
  peers: LocalPeerStatus[] = [];
  /** Set: every status read fails with this. */
  failWith: string | undefined;
  statusCalls = 0;
  /** When each status read came in. */
  readonly readsAt: number[] = [];
  readonly pings: string[] = [];
  ping: TailscaledApi['ping'] = async (ip) => {
    this.pings.push(ip);
    return null;
  };
  /** Answers to the reads held by holdNext(), in order; signals are not honoured, as by a read already on its way. */
  readonly held: ((status: LocalStatus) => void)[] = [];
  private holdNextRead = false;

  constructor(
    private readonly clock: Clock,
    private readonly live: () => boolean,
  ) {}

  snapshot(): LocalStatus {
    const Peer = Object.fromEntries(this.peers.map((p) => [`key-${p.TailscaleIPs![0]}`, structuredClone(p)]));
    return { BackendState: this.backendState, Self: { TailscaleIPs: [...this.selfIps], Online: this.selfOnline }, Peer };
  }

  /** The next status read is answered only when the test calls its entry in `held`. */
  holdNext(): void {
    this.holdNextRead = true;
  }

  status(): Promise<LocalStatus> {
    this.statusCalls++;
    this.readsAt.push(this.clock.now());
    if (this.holdNextRead) {
      this.holdNextRead = false;
      return new Promise((resolve) => this.held.push(resolve));
    }
    if (this.failWith !== undefined) return Promise.reject(new Error(this.failWith));
    if (!this.live()) return Promise.reject(new Error('LocalAPI /localapi/v0/status on tailscaled.sock: ECONNREFUSED'));
    return Promise.resolve(this.snapshot());
  }

  async close(): Promise<void> {}
}

interface Harness {
  cfg: TailnetConfig;
  sup: TailscaledSupervisor;
  clock: FakeClock;
  api: FakeLocalApi;
  procs: FakeTailscaled[];
  launchedAt: number[];
  joins: { timeoutMs: number; signal: AbortSignal }[];
  /** What `tailscale up` does; by default it logs tailscaled in. */
  join: (signal: AbortSignal) => Promise<void>;
  /** Runs on every new fake tailscaled (to make it die at once, say). */
  onLaunch: (proc: FakeTailscaled) => void;
  lines: () => { level: number; msg: string; [k: string]: unknown }[];
  transitions: () => string[];
}

function harness(opts: SupervisorOptions & { ignoresSigterm?: boolean; config?: Partial<TailnetConfig> } = {}): Harness {
  const dir = mkdtempSync(path.join(tmp, 'run-'));
  const cfg: TailnetConfig = {
    authKey: 'hskey-auth-0123456789abcdef',
    loginServer: 'http://127.0.0.1:8080',
    hostname: 'gw',
    stateDir: dir,
    socket: path.join(dir, 'tailscaled.sock'),
    userspace: true,
    tailscaledBin: 'tailscaled',
    tailscaleBin: 'tailscale',
    dialMode: 'localapi',
    upExtraArgs: [],
    tailscaledExtraArgs: [],
    upTimeoutMs: 60_000,
    readyTimeoutMs: 30_000,
    ...opts.config,
  };
  const raw: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void raw.push(line) });
  const clock = new FakeClock();
  const procs: FakeTailscaled[] = [];
  const api = new FakeLocalApi(clock, () => procs.at(-1)?.alive === true);
  const h: Harness = {
    cfg,
    clock,
    api,
    procs,
    launchedAt: [],
    joins: [],
    join: async () => {
      api.backendState = 'Running';
    },
    onLaunch: () => undefined,
    lines: () => raw.map((line) => JSON.parse(line) as { level: number; msg: string }),
    transitions: () => h.lines().filter((l) => l.msg.startsWith('tailnet supervisor: ')).map((l) => l.msg.slice('tailnet supervisor: '.length)),
    sup: undefined as unknown as TailscaledSupervisor,
  };
  h.sup = new TailscaledSupervisor(
    cfg,
    log,
    { pollMs: 1_000, minBackoffMs: 500, maxBackoffMs: 4_000, stopGraceMs: 5_000, ...opts },
    {
      clock,
      api,
      launch: (args) => {
        const proc = new FakeTailscaled(args, opts.ignoresSigterm ?? false);
        procs.push(proc);
        h.launchedAt.push(clock.now());
        h.onLaunch(proc);
        return proc;
      },
      join: (timeoutMs, signal) => {
        h.joins.push({ timeoutMs, signal });
        return h.join(signal);
      },
    },
  );
  return h;
}

/** A harness whose tailscaled is logged in and in control's map poll already: start() goes straight to ready. */
async function readyHarness(opts: Parameters<typeof harness>[0] = {}): Promise<Harness> {
  const h = harness(opts);
  h.api.selfOnline = true;
  await h.sup.start();
  await flush();
  assert.equal(h.sup.phase, 'ready');
  return h;
}

/**
 * start() without waiting for it, once it has spawned tailscaled: before that it creates directories, real file system
 * work that the fake clock does not drive.
 */
async function startSpawned(h: Harness): Promise<{ started: Promise<void> }> {
  const started = h.sup.start();
  started.catch(() => undefined);
  for (let i = 0; h.procs.length === 0; i++) {
    if (i > 10_000) throw new Error('start() did not spawn tailscaled');
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await flush();
  // Wrapped: an async function returning the promise itself would wait for it.
  return { started };
}

const messages = (h: Harness, msg: string) => h.lines().filter((l) => l.msg === msg);

test('start: spawn, join with the auth key, Running, then control netmap, warm-up of the online registered devices, ready', async () => {
  const h = harness();
  h.api.peers = [peer('100.64.0.2', true), peer('100.64.0.3', false)];
  h.sup.warmUpAfterStart(async () => ['100.64.0.2', '100.64.0.3', '100.64.0.2']);
  assert.equal(h.sup.controlSync(1_000), null, 'nothing to wait for before tailscaled runs');
  assert.equal(h.sup.unavailableReason(), 'tailscaled is starting');

  await h.sup.start();
  assert.deepEqual(h.procs[0]!.args, [`--statedir=${h.cfg.stateDir}`, `--socket=${h.cfg.socket}`, '--tun=userspace-networking']);
  assert.equal(h.joins.length, 1, 'NeedsLogin: joined with the auth key');
  assert.equal(h.joins[0]!.timeoutMs, 60_000, 'what is left of TS_UP_TIMEOUT_MS');
  assert.equal(h.sup.phase, 'waitingForControl');
  assert.deepEqual(h.sup.state(), { running: true, backendState: 'Running', selfIps: ['100.64.0.1'], ready: false, waitingFor: 'a netmap from control' });
  assert.equal(h.sup.unavailableReason(), null, 'dials may go ahead (they wait for control first)');

  let synced = false;
  void h.sup.controlSync(10_000)!.then(() => (synced = true));
  // Control's netmap arrives, and the ping to the one online device is not answered at first.
  h.api.selfOnline = true;
  h.api.ping = async (ip) => {
    h.api.pings.push(ip);
    return 'no reply';
  };
  await h.clock.advance(99);
  assert.equal(h.sup.phase, 'waitingForControl');
  assert.equal(synced, false);
  await h.clock.advance(1); // polled every 100 ms while waiting for control
  assert.equal(synced, true, 'controlSync settles once the netmap from control is in');
  assert.equal(h.sup.phase, 'warmingUp');
  assert.equal(h.sup.state().waitingFor, 'the warm-up of 1 registered device(s)');
  assert.equal(h.sup.state().ready, false);
  assert.deepEqual(h.api.pings, ['100.64.0.2'], 'only the device control reports online, once');

  h.api.ping = async (ip) => {
    h.api.pings.push(ip);
    return null;
  };
  await h.clock.advance(100);
  assert.equal(h.sup.phase, 'ready');
  assert.deepEqual(h.sup.state(), { running: true, backendState: 'Running', selfIps: ['100.64.0.1'], ready: true });
  assert.equal(h.sup.controlSync(1_000), null);
  assert.deepEqual(h.transitions(), ['idle -> starting', 'starting -> joining', 'joining -> waitingForControl', 'waitingForControl -> warmingUp', 'warmingUp -> ready']);
  const [readyLine] = messages(h, 'tailnet ready: netmap from control, registered devices warmed up');
  assert.ok(readyLine);
  assert.deepEqual([readyLine.registered, readyLine.online, readyLine.warmed], [3, 1, 1]);
  assert.ok(!h.lines().some((l) => JSON.stringify(l).includes('hskey-auth-0123456789abcdef')), 'the auth key is never logged');

  // With control's netmap in, the poll slows down to pollMs.
  const from = h.clock.now();
  await h.clock.advance(3_000);
  const polls = h.api.readsAt.filter((t) => t > from);
  assert.equal(polls.length, 3);
  assert.deepEqual([polls[1]! - polls[0]!, polls[2]! - polls[1]!], [1_000, 1_000]);
  await h.sup.stop();
});

test('a tailscaled already logged in is not joined again, and a netmap from control at Running goes straight to the warm-up', async () => {
  const h = harness();
  h.api.backendState = 'Running';
  h.api.selfOnline = true;
  await h.sup.start();
  await flush();
  assert.equal(h.joins.length, 0);
  assert.deepEqual(h.transitions(), ['idle -> starting', 'starting -> warmingUp', 'warmingUp -> ready']);
  await h.sup.stop();
});

test('warm-up: at most 8 devices at a time', async () => {
  const h = harness();
  const ips = Array.from({ length: 10 }, (_, i) => `100.64.1.${i + 1}`);
  h.api.peers = ips.map((ip) => peer(ip, true));
  h.sup.warmUpAfterStart(async () => ips);
  const answers: (() => void)[] = [];
  h.api.ping = (ip) => {
    h.api.pings.push(ip);
    return new Promise((resolve) => answers.push(() => resolve(null)));
  };
  h.api.selfOnline = true;
  h.api.backendState = 'Running';
  await h.sup.start();
  await flush();
  assert.equal(h.sup.phase, 'warmingUp');
  assert.equal(h.api.pings.length, 8);
  for (const answer of answers.splice(0)) answer();
  await flush();
  assert.equal(h.api.pings.length, 10);
  assert.equal(h.sup.phase, 'warmingUp');
  for (const answer of answers.splice(0)) answer();
  await flush();
  assert.equal(h.sup.phase, 'ready');
  await h.sup.stop();
});

test('without control, ready after TS_READY_TIMEOUT_MS with a warning; control arriving later still warms the devices up', async () => {
  const h = harness();
  h.api.peers = [peer('100.64.0.2', true)];
  h.sup.warmUpAfterStart(async () => ['100.64.0.2']);
  await h.sup.start();
  let settled = false;
  void h.sup.controlSync(60_000)!.then(() => (settled = true));
  const calls = h.api.statusCalls;
  await h.clock.advance(29_999);
  assert.equal(h.sup.phase, 'waitingForControl');
  assert.equal(h.api.statusCalls - calls, 299, 'polled every 100 ms while waiting for control');
  assert.equal(settled, false);
  await h.clock.advance(1);
  assert.equal(h.sup.phase, 'ready');
  assert.equal(h.sup.state().ready, true);
  assert.equal(settled, true, 'a dial waiting for control goes ahead once ready');
  assert.equal(h.sup.controlSync(1_000), null);
  const [warning] = messages(h, 'tailnet not ready within TS_READY_TIMEOUT_MS; serving with the netmap tailscaled has');
  assert.ok(warning);
  assert.equal(warning.waitingFor, 'a netmap from control');
  assert.deepEqual(h.api.pings, []);

  h.api.selfOnline = true;
  await h.clock.advance(100);
  assert.equal(messages(h, 'netmap from control received').length, 1);
  assert.deepEqual(h.api.pings, ['100.64.0.2'], 'the registered device is warmed up all the same');
  assert.equal(h.sup.phase, 'ready');
  assert.equal(messages(h, 'tailnet ready: netmap from control, registered devices warmed up').length, 0, 'it was ready before');
  const after = h.api.statusCalls;
  await h.clock.advance(1_000);
  assert.equal(h.api.statusCalls - after, 1, 'polled every pollMs now');
  await h.sup.stop();
});

test('crash: restarted after a backoff that doubles up to its cap while restarts fail, and starts over once Running', async () => {
  const h = await readyHarness();
  h.api.peers = [peer('100.64.0.2', true)];
  await h.clock.advance(1_000);
  assert.equal(h.sup.peerOnline('100.64.0.2'), true);

  // From now on every new tailscaled dies at once.
  h.onLaunch = (proc) => proc.exit(1, null);
  const crashedAt = h.clock.now();
  h.procs[0]!.exit(null, 'SIGKILL');
  await flush();
  assert.equal(h.sup.phase, 'restarting');
  assert.equal(h.sup.unavailableReason(), 'tailscaled exited (SIGKILL); restarting');
  assert.deepEqual(h.sup.state(), { running: false, backendState: 'restarting', selfIps: ['100.64.0.1'], ready: false });
  assert.equal(h.sup.peerOnline('100.64.0.2'), undefined, 'no peer is known while tailscaled is down');
  assert.equal(messages(h, 'tailscaled exited; restarting')[0]?.restartInMs, 500);

  await h.clock.advance(500 + 1_000 + 2_000 + 4_000 + 4_000 - 1);
  assert.deepEqual(
    h.launchedAt.slice(1).map((t) => t - crashedAt),
    [500, 1_500, 3_500, 7_500],
    'waited 500, 1000, 2000 and 4000 ms',
  );
  assert.deepEqual(
    messages(h, 'tailscaled restart failed').map((l) => l.retryInMs),
    [1_000, 2_000, 4_000, 4_000],
  );
  assert.equal(h.sup.unavailableReason(), 'tailscaled exited (code 1); restarting');
  assert.equal(h.sup.pid, h.procs.at(-1)!.pid);

  // The next one comes up; backoff starts over.
  h.onLaunch = () => undefined;
  await h.clock.advance(1);
  assert.deepEqual(h.launchedAt.slice(1).map((t) => t - crashedAt), [500, 1_500, 3_500, 7_500, 11_500]);
  await flush();
  assert.equal(h.sup.phase, 'ready');
  assert.equal(h.sup.restartCount, 5);
  assert.equal(messages(h, 'tailscaled is Running again').length, 1);
  const upAgainAt = h.clock.now();
  h.procs.at(-1)!.exit(null, 'SIGSEGV');
  await h.clock.advance(500);
  assert.equal(h.launchedAt.at(-1)! - upAgainAt, 500, 'the shortest delay again');
  assert.equal(h.sup.phase, 'ready');
  assert.equal(
    h.transitions().filter((t) => t.endsWith('restarting')).length,
    6,
    'every failed run goes through restarting: one crash, four failures, one crash',
  );
  await h.sup.stop();
});

test('a restart that does not reach Running in time is killed and retried', async () => {
  const h = await readyHarness({ config: { upTimeoutMs: 10_000 } });
  h.api.backendState = 'Starting';
  h.procs[0]!.exit(null, 'SIGKILL');
  await h.clock.advance(500);
  assert.equal(h.procs.length, 2);
  await h.clock.advance(10_000);
  assert.deepEqual(h.procs[1]!.signals, ['SIGKILL']);
  assert.equal(h.sup.unavailableReason(), 'tailscaled exited (SIGKILL); restarting');
  assert.match(String(messages(h, 'tailscaled restart failed')[0]?.err), /did not reach Running within 10000 ms \(last state: Starting\)/);
  h.api.backendState = 'Running';
  await h.clock.advance(1_000);
  assert.equal(h.procs.length, 3);
  await flush();
  assert.equal(h.sup.phase, 'ready');
  await h.sup.stop();
});

test('logged out while running: joins again with the auth key, at most every 30 s', async () => {
  const h = await readyHarness();
  assert.equal(h.joins.length, 1);
  h.join = async () => {
    throw new Error('tailscale up failed (exit 1): invalid key');
  };
  h.api.backendState = 'NeedsLogin';
  await h.clock.advance(1_000);
  assert.equal(h.sup.state().running, false);
  assert.match(h.sup.unavailableReason()!, /NeedsLogin/);
  assert.equal(h.joins.length, 2);
  assert.equal(messages(h, 'tailscaled was logged out (node key expired in Headscale?); joining again with TS_AUTHKEY').length, 1);
  assert.equal(messages(h, 'joining again failed').length, 1);

  await h.clock.advance(29_000);
  assert.equal(h.joins.length, 2, 'not again within 30 s');
  h.join = async () => {
    h.api.backendState = 'Running';
  };
  await h.clock.advance(1_000);
  assert.equal(h.joins.length, 3);
  await h.clock.advance(1_000);
  assert.equal(h.sup.unavailableReason(), null);
  assert.equal(h.sup.state().ready, true, 'this run was ready before it was logged out');
  assert.equal(h.sup.restartCount, 0, 'tailscaled itself was not restarted');
  await h.sup.stop();
});

test('an unanswered poll marks tailscaled unresponsive until it answers again', async () => {
  const h = await readyHarness();
  h.api.failWith = 'LocalAPI: timeout';
  await h.clock.advance(1_000);
  assert.equal(h.sup.unavailableReason(), 'tailscaled is not answering');
  assert.equal(h.sup.state().backendState, 'unresponsive');
  assert.equal(messages(h, 'tailscaled LocalAPI not answering').length, 1);
  h.api.failWith = undefined;
  await h.clock.advance(1_000);
  assert.equal(h.sup.unavailableReason(), null);
  assert.equal(h.sup.state().ready, true);
  await h.sup.stop();
});

test('stop() during start: while waiting for the LocalAPI, during tailscale up, and with a tailscaled that ignores SIGTERM', async () => {
  {
    const h = harness();
    h.api.failWith = 'LocalAPI /localapi/v0/status on tailscaled.sock: ENOENT';
    const { started } = await startSpawned(h);
    await h.clock.advance(300);
    assert.equal(h.sup.phase, 'starting');
    await h.sup.stop();
    await assert.rejects(started, /tailnet supervisor is stopping/);
    assert.deepEqual(h.procs[0]!.signals, ['SIGTERM']);
    assert.equal(h.sup.phase, 'stopped');
    assert.equal(h.sup.unavailableReason(), 'tailscaled is stopped');
    assert.deepEqual(h.sup.state(), { running: false, backendState: 'stopped', selfIps: [], ready: false });
    await h.sup.stop();
    assert.deepEqual(h.procs[0]!.signals, ['SIGTERM'], 'stop() is idempotent');
    await assert.rejects(h.sup.start(), /tailnet supervisor is stopping/, 'no new tailscaled after stop()');
    assert.equal(h.procs.length, 1);
  }
  {
    const h = harness();
    h.join = (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    const { started } = await startSpawned(h);
    assert.equal(h.sup.phase, 'joining');
    await h.sup.stop();
    await assert.rejects(started, /tailnet supervisor is stopping/);
    assert.equal(h.joins[0]!.signal.aborted, true, 'tailscale up is ended too');
    assert.deepEqual(h.procs[0]!.signals, ['SIGTERM']);
  }
  {
    const h = await readyHarness({ ignoresSigterm: true });
    let stopped = false;
    const stopping = h.sup.stop().then(() => (stopped = true));
    await h.clock.advance(4_999);
    assert.equal(stopped, false);
    assert.deepEqual(h.procs[0]!.signals, ['SIGTERM']);
    await h.clock.advance(1);
    await stopping;
    assert.deepEqual(h.procs[0]!.signals, ['SIGTERM', 'SIGKILL']);
    assert.equal(messages(h, 'tailscaled ignored SIGTERM, killing it').length, 1);
  }
});

test('start() rejects, with tailscaled stopped, when Running is not reached within TS_UP_TIMEOUT_MS or tailscaled dies', async () => {
  {
    const h = harness();
    h.api.backendState = 'Starting';
    const { started } = await startSpawned(h);
    const failed = assert.rejects(started, /tailscaled did not reach Running within 60000 ms \(last state: Starting\)/);
    await h.clock.advance(60_000);
    await failed;
    assert.deepEqual(h.procs[0]!.signals, ['SIGTERM'], 'stopped once it had failed');
    assert.equal(h.sup.phase, 'stopped');
    assert.equal(h.joins.length, 0, 'Starting is not a state that needs tailscale up');
  }
  {
    const h = harness();
    h.onLaunch = (proc) => proc.exit(-2, null);
    await assert.rejects(h.sup.start(), /tailscaled exited during start-up/);
    assert.equal(h.sup.phase, 'stopped');
    assert.equal(h.procs.length, 1, 'not restarted');
  }
  {
    const h = harness();
    h.join = async () => {
      throw new Error('tailscale up failed (exit 1): invalid key');
    };
    await assert.rejects(h.sup.start(), /tailscale up failed/);
    assert.deepEqual(h.procs[0]!.signals, ['SIGTERM']);
  }
});

test('a status read of an earlier tailscaled that lands late changes nothing', async () => {
  const h = await readyHarness();
  h.api.holdNext();
  await h.clock.advance(1_000); // this poll's read hangs
  const oldRead = h.api.held.pop()!;
  const staleStatus = { ...h.api.snapshot(), BackendState: 'NeedsLogin', Peer: { x: peer('100.64.0.77', true) } };

  h.procs[0]!.exit(null, 'SIGKILL');
  h.api.selfIps = ['100.64.0.9'];
  await h.clock.advance(500);
  assert.equal(h.procs.length, 2);
  assert.equal(h.sup.phase, 'ready');
  const joins = h.joins.length;

  oldRead(staleStatus);
  await flush();
  assert.equal(h.sup.peerOnline('100.64.0.77'), undefined);
  assert.equal(h.sup.unavailableReason(), null);
  assert.deepEqual(h.sup.state(), { running: true, backendState: 'Running', selfIps: ['100.64.0.9'], ready: true });
  assert.equal(h.joins.length, joins, 'the old run does not act on what it read');
  await h.sup.stop();
});

test('a read started before a newer one that has landed is dropped', async () => {
  const h = await readyHarness();
  h.api.peers = [peer('100.64.0.2', true)];
  h.api.holdNext();
  await h.clock.advance(1_000); // the poll's read hangs
  const slowPoll = h.api.held.pop()!;
  await h.clock.advance(300);
  assert.equal((await h.sup.checkPeer('100.64.0.2', 1_000)).online, true, 'a fresh read by checkPeer');
  slowPoll({ ...h.api.snapshot(), Peer: {} });
  await flush();
  assert.equal(h.sup.peerOnline('100.64.0.2'), true);
  await h.sup.stop();
});

test('onPeerOffline: called for peers that were online in one read and offline or gone in the next', async () => {
  const h = await readyHarness();
  h.api.peers = [peer('100.64.0.2', true), peer('100.64.0.3', true), peer('100.64.0.4', false), peer('100.64.0.5', true)];
  await h.clock.advance(1_000);
  const seen: string[] = [];
  const stopListening = h.sup.onPeerOffline((ip) => seen.push(ip));
  h.api.peers = [peer('100.64.0.2', false), peer('100.64.0.4', false), peer('100.64.0.5', true)];
  await h.clock.advance(1_000);
  assert.deepEqual(seen.sort(), ['100.64.0.2', '100.64.0.3']);
  await h.clock.advance(1_000);
  assert.equal(seen.length, 2, 'offline stays offline: no new call');
  stopListening();
  h.api.peers = [];
  await h.clock.advance(1_000);
  assert.equal(seen.length, 2);
  await h.sup.stop();
});

test('checkPeer: concurrent checks share one fresh read, reused for 250 ms', async () => {
  const h = await readyHarness();
  h.api.peers = [peer('100.64.0.2', true)];
  await h.clock.advance(300);
  const calls = h.api.statusCalls;
  const [a, b] = await Promise.all([h.sup.checkPeer('100.64.0.2', 1_000), h.sup.checkPeer('100.64.0.3', 1_000)]);
  assert.equal(h.api.statusCalls, calls + 1);
  assert.deepEqual(a, { online: true, liveSession: false });
  assert.deepEqual(b, { online: undefined, liveSession: false });
  await h.clock.advance(250);
  await h.sup.checkPeer('100.64.0.2', 1_000);
  assert.equal(h.api.statusCalls, calls + 1, 'the read is 250 ms old: still fresh');
  await h.clock.advance(1);
  await h.sup.checkPeer('100.64.0.2', 1_000);
  assert.equal(h.api.statusCalls, calls + 2);
  await h.sup.stop();
});

test('peerLink: the last handshake and whether traffic is relayed, from the latest status read', async () => {
  const h = await readyHarness();
  h.api.peers = [
    { ...peer('100.64.0.2', true), CurAddr: '192.0.2.7:41641', LastHandshake: '2026-11-30T12:00:00Z' },
    { ...peer('100.64.0.3', true), CurAddr: '', LastHandshake: '0001-01-01T00:00:00Z' },
    { ...peer('100.64.0.4', false), CurAddr: '' },
  ];
  await h.clock.advance(1_000);
  assert.deepEqual(h.sup.peerLink('100.64.0.2'), { lastHandshake: '2026-11-30T12:00:00.000Z', relayed: false });
  assert.deepEqual(h.sup.peerLink('100.64.0.3'), { lastHandshake: null, relayed: true }, 'no direct address: through DERP');
  assert.deepEqual(h.sup.peerLink('100.64.0.4'), { lastHandshake: null, relayed: null }, 'neither a direct path nor a DERP home');
  assert.equal(h.sup.peerLink('100.64.0.9'), undefined);
  await h.sup.stop();
});

test('controlSync settles after its timeout when control does not answer', async () => {
  const h = harness();
  await h.sup.start();
  let settled = false;
  void h.sup.controlSync(2_000)!.then(() => (settled = true));
  await h.clock.advance(1_999);
  assert.equal(settled, false);
  await h.clock.advance(1);
  assert.equal(settled, true);
  assert.equal(h.sup.phase, 'waitingForControl');
  assert.ok(h.sup.controlSync(2_000), 'still waiting for control: the next dial waits too');
  await h.sup.stop();
  assert.equal(h.sup.controlSync(2_000), null);
});

test('warmUp(ip) for a just-approved device: true once it answers, false when it never shows up', async () => {
  const h = await readyHarness();
  const warming = h.sup.warmUp('100.64.0.2', 10_000);
  await h.clock.advance(300);
  h.api.peers = [peer('100.64.0.2', true)];
  await h.clock.advance(100);
  assert.equal(await warming, true);
  assert.equal(h.sup.peerOnline('100.64.0.2'), true, 'what the warm-up read is the view now');
  const missing = h.sup.warmUp('100.64.0.99', 500);
  await h.clock.advance(500);
  assert.equal(await missing, false);
  assert.equal(messages(h, 'could not warm up the path to a new device; its first connection may be slow').length, 1);
  await h.sup.stop();
});

test('the transition table: events of a run that is over, or out of order, change nothing', () => {
  const proc = new FakeTailscaled([], false);
  const backoff = { minMs: 500, maxMs: 30_000 };
  const first = new Run(1, proc, 0);
  const second = new Run(2, proc, 500);
  const link = { backendState: 'Running', reason: null };
  const restarting: SupervisorState = { phase: 'restarting', last: first, reason: 'tailscaled exited (SIGKILL); restarting', delayMs: 500 };
  assert.equal(next(restarting, { type: 'status', run: first, backendState: 'Running', control: true }, backoff), undefined);
  assert.equal(next(restarting, { type: 'readyTimeout', run: first }, backoff), undefined);
  const starting: SupervisorState = { phase: 'starting', run: second, link: { backendState: 'starting', reason: 'tailscaled is starting' } };
  assert.equal(next(starting, { type: 'exited', run: first, reason: 'x' }, backoff), undefined);
  assert.equal(next(starting, { type: 'warmedUp', run: second }, backoff), undefined);
  assert.equal(next(starting, { type: 'readyTimeout', run: second }, backoff), undefined);
  const waiting: SupervisorState = { phase: 'waitingForControl', run: second, link };
  assert.equal(next(waiting, { type: 'joining', run: second }, backoff), undefined);
  assert.equal(next(waiting, { type: 'spawned', run: first }, backoff), undefined);
  assert.deepEqual(next(waiting, { type: 'exited', run: second, reason: 'x' }, backoff), { phase: 'restarting', last: second, reason: 'x', delayMs: 500 });
  assert.deepEqual(next(starting, { type: 'exited', run: second, reason: 'x' }, backoff), { phase: 'restarting', last: second, reason: 'x', delayMs: 1_000 });
  const stopped = next(waiting, { type: 'stop' }, backoff)!;
  assert.deepEqual(stopped, { phase: 'stopped', last: second });
  assert.equal(next(stopped, { type: 'stop' }, backoff), undefined);
  assert.equal(next(stopped, { type: 'spawned', run: first }, backoff), undefined);
});
