// What the primary and its worker processes say to each other over the cluster's IPC channel (structured clone,
// `serialization: 'advanced'`, so dates and maps in store answers arrive as they left). Every message carries `tg`, so
// anything else on the channel (node:cluster's own messages) is told apart at once.
import type { SharedVerdict } from '../tunnel/limits.js';
import type { SlotRequest } from '../tunnel/shared-limits.js';
import type { LiveTotals } from '../tunnel/live-stats.js';
import type { TailnetCall, TailnetSnapshot } from './tailnet-mirror.js';

/** Primary → worker. */
export type ToWorker =
  /** Forget the key's cached route (a registration, a change), then say so with `applied`. */
  | { tg: 'invalidate'; id: number; keyHash: string }
  | { tg: 'invalidate-all'; id: number }
  /** Cut the key's open tunnels and answer how many (`onChange`: from a change notification, see TunnelRegistry). */
  | { tg: 'cut'; id: number; keyHash: string; onChange: boolean }
  /** The change feed reconnected: read the keys with open tunnels again. */
  | { tg: 'recheck' }
  /** Answer this process's metrics as JSON (prom-client's getMetricsAsJSON). */
  | { tg: 'metrics'; id: number }
  /** The part of the key's bandwidth caps this worker may use now (SharedShaping). */
  | { tg: 'share'; keyId: number; share: number }
  /** Answer this process's counts for /stats. */
  | { tg: 'totals'; id: number }
  /** The answer to an `acquire`. */
  | { tg: 'slot'; id: number; verdict: SharedVerdict }
  /** The answer to a store call. */
  | { tg: 'store'; id: number; value?: unknown; error?: StoreFailure }
  /** What the primary's tailscaled looks like now (all of it, or what changed). */
  | { tg: 'tailnet'; snapshot: TailnetSnapshot }
  /** The answer to a `tailnet-call`. */
  | { tg: 'tailnet-answer'; id: number; value?: unknown; error?: string }
  /** Drain and exit (SIGTERM reached the primary). */
  | { tg: 'stop' };

/** Worker → primary. */
export type ToPrimary =
  /** The worker listens for messages now (anything sent before may have been missed): the tailnet's picture, please. */
  | { tg: 'hello' }
  /** Every proxy listener of the worker listens, on these ports. */
  | { tg: 'listening'; ports: ListenerPorts }
  | { tg: 'cut'; id: number; tunnels: number }
  /** The invalidation `id` is applied: a connection this worker accepts from now on sees the change. */
  | { tg: 'applied'; id: number }
  | { tg: 'metrics'; id: number; json: unknown }
  | { tg: 'totals'; id: number; totals: LiveTotals }
  /** One place and one rate token of a key with maxTunnels or tunnelsPerSecond. */
  | { tg: 'acquire'; id: number; req: SlotRequest }
  | { tg: 'release'; keyId: number }
  /** The worker carries this many relayed tunnels of a key with a bandwidth cap now. */
  | { tg: 'shaping'; keyId: number; tunnels: number }
  /** A question for the primary's tailscaled view (TailnetMirror). */
  | { tg: 'tailnet-call'; id: number; call: TailnetCall }
  /** A call of the primary's store, for the worker's key lookups and usage writes. */
  | { tg: 'store'; id: number; method: string; args: unknown[] };

export interface ListenerPorts {
  http: number;
  socks: number;
  https?: number | undefined;
  socksTls?: number | undefined;
}

/** A store call that failed, as the worker rebuilds it: the error's class matters (StoreUnavailableError, StoreError). */
export interface StoreFailure {
  name: string;
  message: string;
  /** StoreUnavailableError's reason, StoreError's kind. */
  reason?: string;
  kind?: string;
}

export function isWorkerMessage(m: unknown): m is ToWorker {
  return typeof m === 'object' && m !== null && typeof (m as { tg?: unknown }).tg === 'string';
}

export const isPrimaryMessage = isWorkerMessage as (m: unknown) => m is ToPrimary;

/** Where the primary's tailscaled takes SOCKS5 dials (userspace, TS_DIAL_MODE=socks5), set by the primary at fork. */
export const SOCKS_PORT_ENV = 'TAILGATE_WORKER_TAILSCALED_SOCKS_PORT';
