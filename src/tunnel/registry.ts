import type { Socket } from 'node:net';

/**
 * Open client sockets grouped by key hash, so that revoking a key can cut its tunnels at once and
 * shutdown can wait for (then cut) whatever is still open.
 */
export class TunnelRegistry {
  private readonly byKey = new Map<string, Set<Socket>>();
  private count = 0;

  /**
   * Idempotent: a listener registers the client as soon as its key is accepted (so a revocation that lands
   * while the device is being dialled still finds it) and the relay registers it again.
   */
  add(keyHash: string, client: Socket): void {
    let set = this.byKey.get(keyHash);
    if (set === undefined) {
      set = new Set();
      this.byKey.set(keyHash, set);
    }
    if (set.has(client)) return;
    set.add(client);
    this.count++;
  }

  remove(keyHash: string, client: Socket): void {
    const set = this.byKey.get(keyHash);
    if (set === undefined || !set.delete(client)) return;
    this.count--;
    if (set.size === 0) this.byKey.delete(keyHash);
  }

  /** Destroys every tunnel of a key; the relay's close handlers remove them from the registry. Returns how many. */
  closeKey(keyHash: string): number {
    const set = this.byKey.get(keyHash);
    if (set === undefined) return 0;
    const n = set.size;
    for (const s of [...set]) s.destroy();
    return n;
  }

  closeAll(): number {
    let n = 0;
    for (const key of [...this.byKey.keys()]) n += this.closeKey(key);
    return n;
  }

  get size(): number {
    return this.count;
  }
}
