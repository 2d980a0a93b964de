import type { Socket } from 'node:net';

/**
 * Open client sockets grouped by key hash, so that revoking a key can cut its tunnels at once and
 * shutdown can wait for (then cut) whatever is still open.
 */
/** How long tunnels cut on a change notification wait to be claimed by this gateway's own revocation of the key. */
const CLAIM_WINDOW_MS = 10_000;

export class TunnelRegistry {
  private readonly byKey = new Map<string, Set<Socket>>();
  private count = 0;
  /**
   * Tunnels closeKeyOnChange() cut, by key hash, with when. This gateway's own revocation commits, then cuts; its own
   * change notification can arrive in between and cut first, and the revocation's answer must still count those.
   */
  private readonly cutOnChange = new Map<string, { n: number; at: number }>();

  /**
   * Idempotent. The pipeline registers the client as soon as its key is accepted (so a revocation that lands
   * while the device is being dialled still finds it); the relay keeps that registration.
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

  /** Whether the key has tunnels (or forwarded requests) open. */
  has(keyHash: string): boolean {
    return this.byKey.has(keyHash);
  }

  /** Hashes of the keys with tunnels (or forwarded requests) open. */
  openKeys(): string[] {
    return [...this.byKey.keys()];
  }

  /** The key's open client sockets. */
  of(keyHash: string): Iterable<Socket> {
    return this.byKey.get(keyHash) ?? [];
  }

  remove(keyHash: string, client: Socket): void {
    const set = this.byKey.get(keyHash);
    if (set === undefined || !set.delete(client)) return;
    this.count--;
    if (set.size === 0) this.byKey.delete(keyHash);
  }

  /**
   * Destroys every tunnel of a key; the relay's close handlers remove them from the registry. Returns how many,
   * including those a change notification for the key cut moments before (see cutOnChange).
   */
  closeKey(keyHash: string): number {
    const claimed = this.cutOnChange.get(keyHash);
    if (claimed !== undefined) this.cutOnChange.delete(keyHash);
    const early = claimed !== undefined && performance.now() - claimed.at <= CLAIM_WINDOW_MS ? claimed.n : 0;
    return early + this.destroy(keyHash);
  }

  /** closeKey() for a change notification (another gateway's revocation, or this gateway's own, arriving first). */
  closeKeyOnChange(keyHash: string): number {
    const n = this.destroy(keyHash);
    if (n === 0) return 0;
    const now = performance.now();
    // Entries nobody here claims (revocations made by other gateways) go once they are out of the window.
    if (this.cutOnChange.size >= 64) for (const [k, v] of this.cutOnChange) if (now - v.at > CLAIM_WINDOW_MS) this.cutOnChange.delete(k);
    const prior = this.cutOnChange.get(keyHash);
    this.cutOnChange.set(keyHash, { n: n + (prior?.n ?? 0), at: now });
    return n;
  }

  private destroy(keyHash: string): number {
    const set = this.byKey.get(keyHash);
    if (set === undefined) return 0;
    // A socket destroyed a moment ago stays listed until its close handler runs; it was counted by whoever cut it.
    let n = 0;
    for (const s of [...set]) {
      if (s.destroyed) continue;
      s.destroy();
      n++;
    }
    return n;
  }

  closeAll(): number {
    let n = 0;
    for (const key of [...this.byKey.keys()]) n += this.destroy(key);
    return n;
  }

  get size(): number {
    return this.count;
  }
}
