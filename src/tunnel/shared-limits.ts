// The one count of places (maxTunnels) and rate tokens (tunnelsPerSecond) for keys whose tunnels several processes
// carry: the primary of a gateway with worker processes keeps it and answers each worker's request (src/workers/).
// The same rules as a KeyGate in one process: the place is checked before the rate, and a refused tunnel takes no token.
import { performance } from 'node:perf_hooks';
import type { SharedVerdict } from './limits.js';

/** What a worker asks for: one place and one token of a key, under the key's limits as that worker resolved them. */
export interface SlotRequest {
  keyId: number;
  /** Infinity: no limit on places. */
  maxTunnels: number;
  /** Tunnels per second; 0: no rate limit. */
  rate: number;
  burst: number;
}

interface KeySlots {
  open: number;
  /** Places held per process, given back when a process ends without releasing them. */
  byHolder: Map<number, number>;
  rate: number;
  burst: number;
  tokens: number;
  at: number;
}

export class SharedSlots {
  private readonly keys = new Map<number, KeySlots>();

  /** One place and one token for `holder` (a worker's id), or why not. */
  acquire(holder: number, req: SlotRequest, now = performance.now()): SharedVerdict {
    let k = this.keys.get(req.keyId);
    if (k === undefined) {
      k = { open: 0, byHolder: new Map(), rate: req.rate, burst: req.burst, tokens: req.burst, at: now };
      this.keys.set(req.keyId, k);
    } else if (k.rate !== req.rate || k.burst !== req.burst) {
      // New limits start a full bucket, as KeyGate.update() does.
      k.rate = req.rate;
      k.burst = req.burst;
      k.tokens = req.burst;
      k.at = now;
    }
    if (k.open >= req.maxTunnels) return 'tunnel-limit';
    if (k.rate > 0) {
      const tokens = Math.min(k.burst, k.tokens + ((now - k.at) * k.rate) / 1000);
      k.at = now;
      if (tokens < 1) {
        k.tokens = tokens;
        return { waitS: (1 - tokens) / k.rate };
      }
      k.tokens = tokens - 1;
    }
    k.open++;
    k.byHolder.set(holder, (k.byHolder.get(holder) ?? 0) + 1);
    return null;
  }

  release(holder: number, keyId: number): void {
    const k = this.keys.get(keyId);
    const held = k?.byHolder.get(holder);
    if (k === undefined || held === undefined) return;
    k.open--;
    if (held <= 1) k.byHolder.delete(holder);
    else k.byHolder.set(holder, held - 1);
  }

  /** A process ended (or crashed): the places it held are free again. */
  holderGone(holder: number): void {
    for (const k of this.keys.values()) {
      const held = k.byHolder.get(holder);
      if (held === undefined) continue;
      k.open -= held;
      k.byHolder.delete(holder);
    }
  }

  /** Places held now for the key, by every process together. */
  open(keyId: number): number {
    return this.keys.get(keyId)?.open ?? 0;
  }
}

/**
 * How a key's bandwidth caps are split between the processes that carry its tunnels: each gets the part of the cap its
 * share of the key's relayed tunnels is, so the parts add up to the cap. Not work-conserving: a process whose tunnels
 * of the key are idle keeps its part.
 */
export class SharedShaping {
  private readonly keys = new Map<number, Map<number, number>>();
  /** The share last told to each holder, per key. */
  private readonly told = new Map<number, Map<number, number>>();

  /** `holder` now carries `tunnels` of the key's tunnels; returns the shares that changed, by holder. */
  set(holder: number, keyId: number, tunnels: number): Map<number, number> {
    let byHolder = this.keys.get(keyId);
    if (byHolder === undefined) {
      if (tunnels === 0) return new Map();
      this.keys.set(keyId, (byHolder = new Map()));
    }
    if (tunnels === 0) byHolder.delete(holder);
    else byHolder.set(holder, tunnels);
    return this.shares(keyId);
  }

  /** A process ended: its tunnels are gone, the others' shares grow. Returns the changes, by key and holder. */
  holderGone(holder: number): Map<number, Map<number, number>> {
    const changed = new Map<number, Map<number, number>>();
    for (const [keyId, byHolder] of this.keys) {
      this.told.get(keyId)?.delete(holder);
      if (!byHolder.delete(holder)) continue;
      const c = this.shares(keyId);
      if (c.size > 0) changed.set(keyId, c);
    }
    return changed;
  }

  private shares(keyId: number): Map<number, number> {
    const byHolder = this.keys.get(keyId)!;
    let told = this.told.get(keyId);
    if (told === undefined) this.told.set(keyId, (told = new Map()));
    const changed = new Map<number, number>();
    let total = 0;
    for (const n of byHolder.values()) total += n;
    for (const [holder, n] of byHolder) {
      const share = n / total;
      if (told.get(holder) === share) continue;
      told.set(holder, share);
      changed.set(holder, share);
    }
    if (byHolder.size === 0) {
      this.keys.delete(keyId);
      this.told.delete(keyId);
    }
    return changed;
  }
}
