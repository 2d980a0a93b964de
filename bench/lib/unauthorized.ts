// The load generator's side of unauthorized-under-churn: clients whose key must be refused keep trying to open
// tunnels, each attempt from a loopback address of its own, and count what the gateway let through.
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { openTunnel, smallRequest, type ProxySpec, type TargetSpec } from './client.js';

export interface UnauthorizedJob {
  type: 'unauthorized';
  /** One entry per (key, listener); `label` says which key it is (never valid, revoked). */
  clients: { label: string; proxy: ProxySpec }[];
  target: TargetSpec;
  /** Attempt loops per client, each one attempt after the other, unpaced. */
  workers: number;
  durationMs: number;
  /** First two octets of the source addresses, e.g. `127.77`: attempt n comes from `<prefix>.<n / 254>.<n % 254 + 1>`. */
  sourcePrefix: string;
}

export interface UnauthorizedCount {
  label: string;
  kind: string;
  attempts: number;
  /** The gateway said the tunnel was up (HTTP 200 to CONNECT, SOCKS5 reply 0). */
  through: number;
  /** Of those, tunnels that also carried the small request to the sink and its answer. */
  throughWithData: number;
  /** Refused in the handshake (407, SOCKS5 method or auth refusal, or closed). */
  refused: number;
  /**
   * The refusals by what the client saw (`refusalKind`): a gateway's throttle (tailgate's 429 `auth_rate_limited`) or
   * a key store it could not ask (503) is kept apart from the key check's own answer (407, SOCKS5 auth status 1).
   */
  refusedAs: Record<string, number>;
  /** Neither: timeouts, resets before an answer. */
  otherErrors: number;
  errors: string[];
}

/** A refusal is what a gateway that checks the key answers; anything else is kept apart so it is not taken for one. */
const isRefusal = (err: unknown) => {
  const stage = (err as { stage?: string }).stage;
  return stage === 'rejected' || stage === 'handshake';
};

/**
 * What a refused client saw, from the client's error: `http 407`, `http 429`, `socks5 auth`, `socks5 reply 1`, ...
 * Over SOCKS5 a throttled address and a wrong key look the same (RFC 1929 has one failure status); the gateway's own
 * counters tell those apart.
 */
export function refusalKind(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if ((err as { stage?: string }).stage === 'handshake') return 'closed';
  const http = /^CONNECT answered \S+ (\d{3})/.exec(message);
  if (http) return `http ${http[1]}`;
  if (message.startsWith('SOCKS5 auth status')) return 'socks5 auth';
  if (message.startsWith('SOCKS5 method reply')) return 'socks5 method';
  const reply = /^SOCKS5 reply code (\d+)/.exec(message);
  if (reply) return `socks5 reply ${reply[1]}`;
  return 'other';
}

/** Counts one refusal under its kind. */
export function countRefusal(into: Record<string, number>, err: unknown): void {
  const kind = refusalKind(err);
  into[kind] = (into[kind] ?? 0) + 1;
}

export async function unauthorizedAttempts(job: UnauthorizedJob): Promise<{ perClient: UnauthorizedCount[] }> {
  const deadline = performance.now() + job.durationMs;
  let n = 0;
  const nextSource = () => {
    const i = n++ % (254 * 256);
    return `${job.sourcePrefix}.${Math.floor(i / 254)}.${(i % 254) + 1}`;
  };
  const perClient: UnauthorizedCount[] = job.clients.map((c) => ({ label: c.label, kind: c.proxy.kind, attempts: 0, through: 0, throughWithData: 0, refused: 0, refusedAs: {}, otherErrors: 0, errors: [] }));
  const worker = async (ci: number) => {
    const st = perClient[ci]!;
    const proxy = job.clients[ci]!.proxy;
    while (performance.now() < deadline) {
      st.attempts++;
      let socket: net.Socket | undefined;
      try {
        socket = await openTunnel({ ...proxy, localAddress: nextSource() }, job.target, 5_000);
        st.through++;
        socket.on('error', () => {});
        try {
          await smallRequest(socket, 5_000);
          st.throughWithData++;
        } catch {
          // let through, but the tunnel did not carry the request: still counted in `through`
        }
      } catch (err) {
        if (isRefusal(err)) {
          st.refused++;
          countRefusal(st.refusedAs, err);
        } else {
          st.otherErrors++;
          if (st.errors.length < 5) st.errors.push(err instanceof Error ? err.message : String(err));
        }
      } finally {
        socket?.destroy();
      }
    }
  };
  await Promise.all(job.clients.flatMap((_, ci) => Array.from({ length: job.workers }, () => worker(ci))));
  return { perClient };
}
