// The store on a real server, every call through the breaker (breaker.ts): refused at once while the database is
// known to be down, and given up after the timeout otherwise.
import type { DatabaseBreaker } from './breaker.js';
import type { NotifyingSqlNodeStore } from './postgres-store.js';
import type {
  DevicePatch,
  KeyPatch,
  NewDevice,
  NewKey,
  NewPool,
  NodeBinding,
  NodeChange,
  NodeStore,
  PoolPatch,
  RegistryStore,
  UsageDelta,
  UsageStep,
  UsageSubject,
} from './types.js';

export class GuardedStore implements NodeStore, RegistryStore {
  constructor(
    private readonly inner: NotifyingSqlNodeStore,
    private readonly breaker: DatabaseBreaker,
  ) {
    // A listener that was cut by the outage is replaced now rather than at its next heartbeat.
    breaker.onRecovered(() => inner.checkListener());
  }

  /** False while the database is known to be unreachable. */
  get available(): boolean {
    return this.breaker.available;
  }

  findByKeyHash = (keyHash: string) => this.breaker.run(() => this.inner.findByKeyHash(keyHash));
  upsert = (b: NodeBinding) => this.breaker.run(() => this.inner.upsert(b));
  list = () => this.breaker.run(() => this.inner.list());
  get = (id: number) => this.breaker.run(() => this.inner.get(id));
  remove = (id: number) => this.breaker.run(() => this.inner.remove(id));
  ping = () => this.breaker.run(() => this.inner.ping());

  listDevices = () => this.breaker.run(() => this.inner.listDevices());
  getDevice = (id: number) => this.breaker.run(() => this.inner.getDevice(id));
  createDevice = (n: NewDevice) => this.breaker.run(() => this.inner.createDevice(n));
  updateDevice = (id: number, p: DevicePatch) => this.breaker.run(() => this.inner.updateDevice(id, p));
  removeDevice = (id: number) => this.breaker.run(() => this.inner.removeDevice(id));

  createPool = (n: NewPool) => this.breaker.run(() => this.inner.createPool(n));
  listPools = () => this.breaker.run(() => this.inner.listPools());
  getPool = (id: number) => this.breaker.run(() => this.inner.getPool(id));
  updatePool = (id: number, p: PoolPatch) => this.breaker.run(() => this.inner.updatePool(id, p));
  removePool = (id: number) => this.breaker.run(() => this.inner.removePool(id));

  createKey = (n: NewKey) => this.breaker.run(() => this.inner.createKey(n));
  listKeys = () => this.breaker.run(() => this.inner.listKeys());
  getKey = (id: number) => this.breaker.run(() => this.inner.getKey(id));
  updateKey = (id: number, p: KeyPatch) => this.breaker.run(() => this.inner.updateKey(id, p));
  rotateKey = (id: number, keyHash: string) => this.breaker.run(() => this.inner.rotateKey(id, keyHash));
  removeKey = (id: number) => this.breaker.run(() => this.inner.removeKey(id));
  resolveKey = (keyHash: string) => this.breaker.run(() => this.inner.resolveKey(keyHash));

  // No timeout: a write given up on that commits later would be held and written again, counting its bytes twice.
  addUsage = (deltas: readonly UsageDelta[]) => this.breaker.run(() => this.inner.addUsage(deltas), 0);
  usageSeries = (subject: UsageSubject, id: number, from: Date, to: Date, step: UsageStep) =>
    this.breaker.run(() => this.inner.usageSeries(subject, id, from, to, step));
  usageTotals = (subject: UsageSubject, from: Date, to: Date) => this.breaker.run(() => this.inner.usageTotals(subject, from, to));
  usageBytesSeries = (subject: UsageSubject, from: Date, to: Date, step: UsageStep) =>
    this.breaker.run(() => this.inner.usageBytesSeries(subject, from, to, step));
  keyBytesSince = (keys: readonly { keyId: number; since: number }[]) => this.breaker.run(() => this.inner.keyBytesSince(keys));
  keyNames = (ids: readonly number[]) => this.breaker.run(() => this.inner.keyNames(ids));

  watch(onChange: (change: NodeChange) => void, onResync: (reconnected: boolean) => void): Promise<() => Promise<void>> {
    return this.inner.watch(onChange, (reconnected) => {
      // The listener's own reconnection can get through before the breaker's next probe. Dropping the key cache then
      // would leave known keys nothing to be answered from while their lookups are still refused: probe now instead;
      // the recovery replaces the listener, and that resyncs.
      if (reconnected && !this.breaker.available) {
        this.breaker.probeNow();
        return;
      }
      onResync(reconnected);
    });
  }

  async close(): Promise<void> {
    this.breaker.close();
    await this.inner.close();
  }
}
