// The primary of a gateway with TAILGATE_WORKERS > 1. It keeps what must be one for the whole gateway: the API, the
// store (and so the embedded database and its single client), the tailscaled supervisor, the change-notification
// listener and the count of places and rate tokens of keys with maxTunnels or tunnelsPerSecond. The proxy listeners
// run in the workers (node:cluster with SCHED_NONE: every worker accepts from the one listening socket itself, so a
// connection costs no hand-over by the primary; README "Worker processes" has the measurement behind the choice). It
// forwards every key change to every worker and holds the API's answer until each has applied it, sums their
// metrics, drains them on SIGTERM and replaces one that dies.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Counter } from 'prom-client';
import type { PrimaryRole } from '../app.js';
import type { KeyCache, TunnelCutter } from '../bindings/service.js';
import { glibcTunables } from '../core/malloc.js';
import type { Logger } from '../log.js';
import { StoreError, StoreUnavailableError } from '../store/index.js';
import type { NodeStore, RegistryStore } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import type { LiveTotals } from '../tunnel/live-stats.js';
import type { Metrics } from '../tunnel/metrics.js';
import { SharedShaping, SharedSlots } from '../tunnel/shared-limits.js';
import { isPrimaryMessage, SOCKS_PORT_ENV, type ListenerPorts, type StoreFailure, type ToPrimary, type ToWorker } from './messages.js';
import { isWorkerStoreMethod } from './store-methods.js';
import { answerTailnetCall, TailnetPublisher } from './tailnet-mirror.js';

export interface WorkerPoolOptions {
  count: number;
  log: Logger;
  store: NodeStore & RegistryStore;
  /** The supervised tailscaled, when there is one: its state is mirrored to the workers. */
  tailnet?: (TailnetView & { socksPort?: number }) | undefined;
  /** TAILGATE_SHUTDOWN_GRACE_MS: how long a draining worker may take, plus its last usage write. */
  shutdownGraceMs: number;
}

/** How long the primary waits for a worker's answer (its tunnels cut, its metrics) before going on without it. */
const ANSWER_MS = 3_000;
/** How long every worker has to listen at start. */
const START_MS = 60_000;

interface Member {
  worker: Worker;
  listening: boolean;
  ports: ListenerPorts | undefined;
}

/** An answer awaited from several workers: settles when each has answered or gone, or at the deadline. */
class Gather<T> {
  readonly answers: T[] = [];
  private readonly waiting: Set<number>;
  private readonly timer: NodeJS.Timeout;
  private done!: (answers: T[]) => void;
  readonly promise = new Promise<T[]>((resolve) => (this.done = resolve));

  constructor(workers: readonly number[], ms: number) {
    this.waiting = new Set(workers);
    this.timer = setTimeout(() => this.finish(), ms);
    if (this.waiting.size === 0) this.finish();
  }

  answer(worker: number, value: T): void {
    if (!this.waiting.delete(worker)) return;
    this.answers.push(value);
    if (this.waiting.size === 0) this.finish();
  }

  gone(worker: number): void {
    if (this.waiting.delete(worker) && this.waiting.size === 0) this.finish();
  }

  private finish(): void {
    clearTimeout(this.timer);
    this.done(this.answers);
  }
}

function failure(err: unknown): StoreFailure {
  if (err instanceof StoreUnavailableError) return { name: err.name, message: err.message, reason: err.reason };
  if (err instanceof StoreError) return { name: err.name, message: err.message, kind: err.kind };
  return { name: 'Error', message: err instanceof Error ? err.message : String(err) };
}

export class WorkerPool {
  private readonly members = new Map<number, Member>();
  private readonly slots = new SharedSlots();
  private readonly shaping = new SharedShaping();
  private readonly gathers = new Map<number, Gather<unknown>>();
  /** Key invalidations sent and not yet applied by every worker (settled when each has, or is gone, or at ANSWER_MS). */
  private readonly unapplied = new Set<Promise<unknown>>();
  private nextId = 0;
  private stopping = false;
  private started = false;
  private restarts = 0;
  /** Crashes in a row without a worker listening in between, for the back-off before the next replacement. */
  private crashes = 0;
  private metrics: Metrics | undefined;
  private publisher: TailnetPublisher | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: WorkerPoolOptions) {
    this.log = opts.log.child({ component: 'workers' });
  }

  /** Forks the workers and resolves with their ports once every one listens; rejects if one dies first. */
  async start(): Promise<ListenerPorts> {
    // The kernel's accept unless NODE_CLUSTER_SCHED_POLICY says otherwise (node:cluster's own default on Linux is
    // round-robin through the primary, which doubled the CPU a tunnel's set-up costs).
    if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
    const socksPort = this.opts.tailnet?.socksPort;
    cluster.setupPrimary({ serialization: 'advanced' });
    if (this.opts.tailnet !== undefined) this.publisher = new TailnetPublisher(this.opts.tailnet, (snapshot) => this.broadcast({ tg: 'tailnet', snapshot }));
    if (socksPort !== undefined && socksPort !== 0) this.forkEnv[SOCKS_PORT_ENV] = String(socksPort);
    // Read when a process starts, so a worker gets it at fork; the primary relays nothing.
    this.forkEnv.GLIBC_TUNABLES = glibcTunables(process.env.GLIBC_TUNABLES);
    for (let i = 0; i < this.opts.count; i++) this.fork();
    const deadline = Date.now() + START_MS;
    for (;;) {
      const all = [...this.members.values()];
      if (all.length === this.opts.count && all.every((m) => m.listening)) break;
      if (this.failedAtStart !== undefined) throw this.failedAtStart;
      if (Date.now() > deadline) throw new Error(`workers: not every worker listened within ${START_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    this.started = true;
    const ports = [...this.members.values()][0]!.ports!;
    this.log.info({ workers: this.opts.count, pids: [...this.members.values()].map((m) => m.worker.process.pid) }, 'every worker is listening');
    return ports;
  }

  private forkEnv: Record<string, string> = {};
  private failedAtStart: Error | undefined;

  private fork(): void {
    const worker = cluster.fork(this.forkEnv);
    const member: Member = { worker, listening: false, ports: undefined };
    this.members.set(worker.id, member);
    worker.on('message', (m: unknown) => {
      if (isPrimaryMessage(m)) this.onMessage(member, m);
    });
    worker.on('exit', (code, signal) => this.exited(member, code, signal));
  }

  private exited(member: Member, code: number | null, signal: string | null): void {
    const { worker } = member;
    this.members.delete(worker.id);
    this.slots.holderGone(worker.id);
    for (const [keyId, shares] of this.shaping.holderGone(worker.id)) this.tellShares(keyId, shares);
    for (const g of this.gathers.values()) g.gone(worker.id);
    if (this.stopping) return;
    if (!this.started) {
      this.failedAtStart ??= new Error(`worker ${worker.id} exited (${signal ?? `code ${code}`}) before listening; its log says why`);
      return;
    }
    this.restarts++;
    this.crashes++;
    const delayMs = Math.min(5_000, 100 * 2 ** Math.min(this.crashes - 1, 6));
    this.log.error({ worker: worker.id, pid: worker.process.pid, code, signal, replaceInMs: delayMs }, 'worker exited; replacing it (the others keep serving)');
    setTimeout(() => {
      if (!this.stopping) this.fork();
    }, delayMs).unref();
  }

  private onMessage(member: Member, m: ToPrimary): void {
    const w = member.worker;
    switch (m.tg) {
      case 'hello':
        if (this.publisher !== undefined) {
          const publisher = this.publisher;
          this.opts.store.listDevices().then(
            (devices) => this.send(w, { tg: 'tailnet', snapshot: publisher.full(devices.map((d) => d.ip)) }),
            () => this.send(w, { tg: 'tailnet', snapshot: publisher.full([]) }),
          );
        }
        return;
      case 'listening':
        member.listening = true;
        member.ports = m.ports;
        this.crashes = 0;
        if (this.started) this.log.info({ worker: w.id, pid: w.process.pid }, 'replacement worker listening');
        return;
      case 'store':
        void this.storeCall(w, m.id, m.method, m.args);
        return;
      case 'tailnet-call': {
        const view = this.opts.tailnet;
        const asked = view === undefined ? Promise.resolve(undefined) : answerTailnetCall(view, m.call);
        void asked.then(
          (value) => this.send(w, { tg: 'tailnet-answer', id: m.id, value }),
          (err: unknown) => this.send(w, { tg: 'tailnet-answer', id: m.id, error: err instanceof Error ? err.message : String(err) }),
        );
        return;
      }
      case 'acquire':
        this.send(w, { tg: 'slot', id: m.id, verdict: this.slots.acquire(w.id, m.req) });
        return;
      case 'release':
        this.slots.release(w.id, m.keyId);
        return;
      case 'shaping':
        this.tellShares(m.keyId, this.shaping.set(w.id, m.keyId, m.tunnels));
        return;
      case 'cut':
        this.gathers.get(m.id)?.answer(w.id, m.tunnels);
        return;
      case 'applied':
        this.gathers.get(m.id)?.answer(w.id, undefined);
        return;
      case 'metrics':
        this.gathers.get(m.id)?.answer(w.id, m.json);
        return;
      case 'totals':
        this.gathers.get(m.id)?.answer(w.id, m.totals);
        return;
    }
  }

  private tellShares(keyId: number, shares: Map<number, number>): void {
    for (const [holder, share] of shares) {
      const member = this.members.get(holder);
      if (member !== undefined) this.send(member.worker, { tg: 'share', keyId, share });
    }
  }

  private async storeCall(w: Worker, id: number, method: string, args: unknown[]): Promise<void> {
    if (!isWorkerStoreMethod(method)) return this.send(w, { tg: 'store', id, error: { name: 'Error', message: `a worker may not call store.${method}` } });
    try {
      const fn = this.opts.store[method] as (...a: unknown[]) => Promise<unknown>;
      const value = await fn.apply(this.opts.store, args);
      this.send(w, { tg: 'store', id, value });
    } catch (err) {
      this.send(w, { tg: 'store', id, error: failure(err) });
    }
  }

  private send(w: Worker, m: ToWorker): void {
    if (w.isConnected()) w.send(m);
  }

  private broadcast(m: ToWorker): number[] {
    const to: number[] = [];
    for (const { worker } of this.members.values()) {
      if (!worker.isConnected()) continue;
      worker.send(m);
      to.push(worker.id);
    }
    return to;
  }

  private gather<T>(make: (id: number) => ToWorker, ms = ANSWER_MS): Promise<T[]> {
    const id = this.nextId++;
    const message = make(id);
    const to = this.broadcast(message);
    const g = new Gather<T>(to, ms);
    this.gathers.set(id, g as Gather<unknown>);
    return g.promise.finally(() => this.gathers.delete(id));
  }

  /** Whether the proxies are served: every worker listened at start, and at least one listens now. */
  listening(): boolean {
    if (!this.started || this.stopping) return false;
    for (const m of this.members.values()) if (m.listening) return true;
    return false;
  }

  /** This process's part for startGateway. */
  role(ports: ListenerPorts): PrimaryRole {
    return {
      role: 'primary',
      ports,
      spread: (local) => this.spread(local),
      reconnected: () => void this.broadcast({ tg: 'recheck' }),
      listening: () => this.listening(),
      keyChangesApplied: () => this.keyChangesApplied(),
      exposition: () => this.exposition(),
      liveTotals: () => this.liveTotals(),
    };
  }

  /** The primary's registry: its own series (the API's process, the restarts) join the workers' in /metrics. */
  adopt(metrics: Metrics): void {
    this.metrics = metrics;
    const pool = this;
    new Counter({
      name: 'tailgate_worker_restarts_total',
      help: 'Worker processes that exited without being asked to and were replaced',
      registers: [metrics.registry],
      collect() {
        this.reset();
        this.inc(pool.restarts);
      },
    });
  }

  private spread(local: { keyCache: KeyCache; tunnels: TunnelCutter }): { keyCache: KeyCache; tunnels: TunnelCutter } {
    const keyCache: KeyCache = {
      invalidate: (keyHash) => {
        local.keyCache.invalidate(keyHash);
        this.invalidateInWorkers((id) => ({ tg: 'invalidate', id, keyHash }));
      },
      invalidateAll: () => {
        local.keyCache.invalidateAll();
        this.invalidateInWorkers((id) => ({ tg: 'invalidate-all', id }));
      },
      resolveHash: (keyHash) => local.keyCache.resolveHash(keyHash),
    };
    const tunnels: TunnelCutter = {
      closeKey: async (keyHash) => {
        const here = await local.tunnels.closeKey(keyHash);
        const there = await this.gather<number>((id) => ({ tg: 'cut', id, keyHash, onChange: false }));
        return there.reduce((a, b) => a + b, here);
      },
      closeKeyOnChange: (keyHash) => {
        this.broadcast({ tg: 'cut', id: -1, keyHash, onChange: true });
        return local.tunnels.closeKeyOnChange(keyHash);
      },
      openKeys: () => local.tunnels.openKeys(),
    };
    return { keyCache, tunnels };
  }

  private invalidateInWorkers(make: (id: number) => ToWorker): void {
    const applied = this.gather<undefined>(make);
    this.unapplied.add(applied);
    void applied.then(() => this.unapplied.delete(applied));
  }

  /**
   * Resolves once every worker has applied the key invalidations sent so far (or is gone, or ANSWER_MS passed);
   * undefined when none is outstanding. The API holds its answer on it: every worker accepts connections from the
   * kernel itself, so a client that connects after the answer must find the change applied in whichever worker
   * takes it.
   */
  keyChangesApplied(): Promise<unknown> | undefined {
    return this.unapplied.size === 0 ? undefined : Promise.all(this.unapplied);
  }

  /** This process's metrics and every worker's, summed as prom-client's cluster aggregation sums them. */
  private async exposition(): Promise<string> {
    const own = this.metrics === undefined ? [] : await this.metrics.registry.getMetricsAsJSON();
    const theirs = await this.gather<object>((id) => ({ tg: 'metrics', id }));
    return AggregatorRegistry.aggregate([own, ...theirs]).metrics();
  }

  /** Every worker's counts for /stats, added up (a worker that does not answer in time counts nothing this time). */
  private async liveTotals(): Promise<LiveTotals> {
    const sum: LiveTotals = { tunnels: 0, up: 0, down: 0, open: 0 };
    for (const t of await this.gather<LiveTotals>((id) => ({ tg: 'totals', id }))) {
      sum.tunnels += t.tunnels;
      sum.up += t.up;
      sum.down += t.down;
      sum.open += t.open;
    }
    return sum;
  }

  /** Drains every worker (each stops accepting, lets its tunnels finish for the grace period, writes its usage) and waits for all to exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.publisher?.close();
    const exits = [...this.members.values()].map(
      ({ worker }) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          const timer = setTimeout(() => {
            this.log.error({ worker: worker.id }, 'worker did not exit after the grace period; killing it');
            worker.process.kill('SIGKILL');
          }, this.opts.shutdownGraceMs + 15_000);
          worker.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          this.send(worker, { tg: 'stop' });
        }),
    );
    await Promise.all(exits);
  }
}
