// Quotas count bytes over calendar periods in UTC. The counting itself belongs to the usage recorder, which sees
// every gateway's bytes through the database; admission reads it through QuotaLedger, synchronously, from memory.
import type { QuotaPeriod } from '../store/types.js';

export interface QuotaLedger {
  /** Bytes (up + down) the key has used since periodStart (ms since epoch, UTC): the database's total plus this
   *  gateway's deltas not yet flushed. Synchronous: answered from memory (the recorder refreshes per-key totals
   *  from the database on its flush cycle). */
  usedSince(keyId: number, periodStart: number): number;
  /** Ask the ledger to keep the key's total for this period fresh from now on (first use of a quota key). */
  track(keyId: number, periodStart: number): void;
}

/** Where a quota period starts and when the next one does (null: `total` never resets), ms since epoch. */
export interface PeriodBounds {
  start: number;
  resetsAt: number | null;
}

export function periodBounds(period: QuotaPeriod, now: number): PeriodBounds {
  if (period === 'total') return { start: 0, resetsAt: null };
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  if (period === 'month') return { start: Date.UTC(y, m, 1), resetsAt: Date.UTC(y, m + 1, 1) };
  const day = d.getUTCDate();
  return { start: Date.UTC(y, m, day), resetsAt: Date.UTC(y, m, day + 1) };
}
