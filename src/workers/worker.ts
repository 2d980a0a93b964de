// A worker process of a gateway with TAILGATE_WORKERS > 1: a startGateway of its own in the worker role, running the
// proxy listeners (shared with the other workers through node:cluster). What must be one for the whole gateway stays
// with the primary and is reached over IPC: the store (key lookups on a cache miss, usage writes), the count of places
// and rate tokens of keys with maxTunnels or tunnelsPerSecond. The primary tells it of every change to keys (cache
// invalidations, tunnel cuts), asks it for its metrics, and tells it when to drain.
import cluster from 'node:cluster';
import { Gauge } from 'prom-client';
import { startGateway, type Gateway } from '../app.js';
import type { Config } from '../config.js';
import type { Dialer } from '../core/dialer.js';
import type { Logger } from '../log.js';
import { StoreError, StoreUnavailableError, type StoreErrorKind } from '../store/index.js';
import type { NodeStore, RegistryStore } from '../store/types.js';
import { DirectDialer } from '../tailnet/direct-dialer.js';
import { LocalApiDialer } from '../tailnet/localapi-dialer.js';
import { TailscaledSocksDialer } from '../tailnet/socks-dialer.js';
import type { TailnetView } from '../tailnet/types.js';
import type { KeyGate, SharedAdmission } from '../tunnel/limits.js';
import { liveTotals } from '../tunnel/live-stats.js';
import type { Refusal } from '../tunnel/refusal.js';
import { isWorkerMessage, SOCKS_PORT_ENV, type StoreFailure, type ToPrimary, type ToWorker } from './messages.js';
import { WORKER_STORE_METHODS } from './store-methods.js';
import { TailnetMirror } from './tailnet-mirror.js';

function send(m: ToPrimary): void {
  // Once the primary is gone there is nobody to tell; the worker is draining by then (see 'disconnect').
  if (process.connected) process.send!(m);
}

/** Calls the primary answers, by id. */
class Calls<T> {
  private next = 0;
  private readonly pending = new Map<number, { resolve(v: T): void; reject(e: Error): void }>();

  open(resolve: (v: T) => void, reject: (e: Error) => void): number {
    const id = this.next++;
    this.pending.set(id, { resolve, reject });
    return id;
  }

  settle(id: number): { resolve(v: T): void; reject(e: Error): void } | undefined {
    const p = this.pending.get(id);
    this.pending.delete(id);
    return p;
  }

  failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

function rebuild(f: StoreFailure): Error {
  if (f.name === 'StoreUnavailableError') return new StoreUnavailableError(f.reason ?? 'primary');
  if (f.name === 'StoreError') return new StoreError((f.kind ?? 'conflict') as StoreErrorKind, f.message);
  return new Error(f.message);
}

/** The primary's store, as far as a worker uses it; anything else is not there (a worker has no API). */
function primaryStore(calls: Calls<unknown>): NodeStore & RegistryStore {
  const store: Record<string, unknown> = {
    close: async () => {},
  };
  for (const method of WORKER_STORE_METHODS) {
    store[method] = (...args: unknown[]) =>
      new Promise((resolve, reject) => {
        if (!process.connected) return reject(new StoreUnavailableError('primary gone'));
        send({ tg: 'store', id: calls.open(resolve, reject), method, args });
      });
  }
  return store as unknown as NodeStore & RegistryStore;
}

/** maxTunnels and tunnelsPerSecond of keys that have them, counted by the primary for every worker together. */
class PrimaryAdmission implements SharedAdmission {
  readonly calls = new Calls<Refusal | null>();
  readonly gates = new Map<number, KeyGate>();

  acquire(gate: KeyGate): Promise<Refusal | null> {
    return new Promise((resolve, reject) => {
      const { maxTunnels, rate, burst } = gate.admission;
      const id = this.calls.open(resolve, reject);
      this.gates.set(id, gate);
      send({ tg: 'acquire', id, req: { keyId: gate.keyId, maxTunnels, rate, burst } });
    });
  }

  release(keyId: number): void {
    send({ tg: 'release', keyId });
  }

  shaping(keyId: number, tunnels: number): void {
    send({ tg: 'shaping', keyId, tunnels });
  }
}

function tailnetDialer(config: Config): Dialer {
  const cfg = config.tailnet;
  if (cfg === undefined || !cfg.userspace) return new DirectDialer();
  if (cfg.dialMode === 'localapi') return new LocalApiDialer(cfg.socket);
  return new TailscaledSocksDialer({ socksPort: Number(process.env[SOCKS_PORT_ENV]) });
}

/** Runs this worker until the primary says stop (or goes away), or a signal reaches it; then drains and exits 0. */
export async function serveWorker(config: Config, baseLog: Logger): Promise<void> {
  const id = cluster.worker!.id;
  const log = baseLog.child({ worker: id, pid: process.pid });
  const storeCalls = new Calls<unknown>();
  const admission = new PrimaryAdmission();
  const tailnetCalls = new Calls<unknown>();
  const mirror =
    config.tailnet === undefined
      ? undefined
      : new TailnetMirror(
          (call) =>
            new Promise((resolve, reject) => {
              if (!process.connected) return reject(new Error('the primary is gone'));
              send({ tg: 'tailnet-call', id: tailnetCalls.open(resolve, reject), call });
            }),
        );
  let gateway: Gateway | undefined;
  let stopping = false;

  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'worker draining');
    void (async () => {
      try {
        await gateway?.close();
      } catch (err) {
        log.error({ err }, 'worker shutdown failed');
        process.exit(1);
      }
      process.exit(0);
    })();
  };

  process.on('message', (m: unknown) => {
    if (!isWorkerMessage(m)) return;
    onMessage(m);
  });
  const onMessage = (m: ToWorker) => {
    switch (m.tg) {
      case 'store': {
        const call = storeCalls.settle(m.id);
        if (m.error !== undefined) call?.reject(rebuild(m.error));
        else call?.resolve(m.value);
        return;
      }
      case 'slot': {
        const gate = admission.gates.get(m.id);
        admission.gates.delete(m.id);
        const call = admission.calls.settle(m.id);
        if (gate !== undefined) call?.resolve(gate.settle(m.verdict));
        return;
      }
      case 'share':
        gateway?.limits.get(m.keyId)?.setShare(m.share);
        return;
      case 'invalidate':
        gateway?.resolver.invalidate(m.keyHash);
        send({ tg: 'applied', id: m.id });
        return;
      case 'invalidate-all':
        gateway?.resolver.invalidateAll();
        send({ tg: 'applied', id: m.id });
        return;
      case 'cut': {
        const tunnels = gateway === undefined ? 0 : m.onChange ? gateway.tunnels.closeKeyOnChange(m.keyHash) : gateway.tunnels.closeKey(m.keyHash);
        if (!m.onChange) send({ tg: 'cut', id: m.id, tunnels });
        return;
      }
      case 'recheck':
        gateway?.bindings.resync(true);
        return;
      case 'metrics':
        if (gateway === undefined) send({ tg: 'metrics', id: m.id, json: [] });
        else
          void gateway.metrics.registry.getMetricsAsJSON().then(
            (json) => send({ tg: 'metrics', id: m.id, json }),
            () => send({ tg: 'metrics', id: m.id, json: [] }),
          );
        return;
      case 'totals':
        if (gateway === undefined) send({ tg: 'totals', id: m.id, totals: { tunnels: 0, up: 0, down: 0, open: 0 } });
        else void liveTotals(gateway.metrics, gateway.usage).then((totals) => send({ tg: 'totals', id: m.id, totals }));
        return;
      case 'tailnet':
        mirror?.apply(m.snapshot);
        return;
      case 'tailnet-answer': {
        const call = tailnetCalls.settle(m.id);
        if (m.error !== undefined) call?.reject(new Error(m.error));
        else call?.resolve(m.value);
        return;
      }
      case 'stop':
        stop('the primary is stopping');
        return;
    }
  };
  // The primary is gone (it crashed, or was killed): nothing can be looked up or written any more; drain what is open.
  process.on('disconnect', () => {
    const gone = new StoreUnavailableError('primary gone');
    storeCalls.failAll(gone);
    tailnetCalls.failAll(gone);
    // A tunnel waiting for its place cannot get one; it is refused as over the limit rather than let through uncounted.
    for (const [callId, gate] of admission.gates) admission.calls.settle(callId)?.resolve(gate.settle('tunnel-limit'));
    admission.gates.clear();
    stop('the primary went away');
  });
  // A signal to the whole process group (Ctrl-C) reaches the workers too; the primary stops them all the same way.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  send({ tg: 'hello' });
  if (mirror !== undefined) await mirror.first;
  const tailnet: TailnetView | undefined = mirror;
  gateway = await startGateway(config, log, { store: primaryStore(storeCalls), dialer: tailnetDialer(config), tailnet, cluster: { role: 'worker', admission } });
  const registry = gateway.metrics.registry;
  const worker = String(id);
  const metrics = gateway.metrics;
  // Per worker, so that the sum /metrics answers can be told apart (how evenly connections spread, which one died).
  new Gauge({
    name: 'tailgate_worker_tunnels_established',
    help: 'Tunnels established by each worker process since it started',
    labelNames: ['worker'] as const,
    registers: [registry],
    async collect() {
      let n = 0;
      for (const v of (await metrics.tunnelsTotal.get()).values) n += v.value;
      this.set({ worker }, n);
    },
  });
  new Gauge({
    name: 'tailgate_worker_tunnels_open',
    help: 'Tunnels (and forwarded requests) open in each worker process',
    labelNames: ['worker'] as const,
    registers: [registry],
    collect() {
      this.set({ worker }, gateway!.tunnels.size);
    },
  });
  if (stopping) return;
  const { http, socks, https, socksTls } = gateway.ports;
  send({ tg: 'listening', ports: { http, socks, https, socksTls } });
}
