// Client for tailscaled's LocalAPI on its unix socket. tailscaled rejects requests whose Host is not
// `local-tailscaled.sock` with 403 (DNS-rebinding guard), so every request names that host explicitly.
import { Agent, request } from 'undici';
import { LOCALAPI_HOST } from '../protocol/localapi.js';
import type { PeerCheck, PeerLink } from './types.js';

/** The parts of `GET /localapi/v0/status` tailgate reads (tailscale's ipnstate.Status). */
export interface LocalStatus {
  BackendState: string;
  AuthURL?: string;
  TailscaleIPs?: string[] | null;
  Self?: { HostName?: string; TailscaleIPs?: string[] | null; Online?: boolean } | null;
  Peer?: Record<string, LocalPeerStatus> | null;
  Health?: string[] | null;
}

export interface LocalPeerStatus {
  HostName?: string;
  TailscaleIPs?: string[] | null;
  Online?: boolean;
  /** Home DERP region of the peer ("" until the peer has reported one to control). */
  Relay?: string;
  /** The peer's reported endpoints. */
  Addrs?: string[] | null;
  /** The direct address in use, "" when none (yet) or relayed. */
  CurAddr?: string;
  /** When control last saw the peer; only set while it is offline. Go's zero time when unset. */
  LastSeen?: string;
  /** Last WireGuard handshake with the peer; Go's zero time when there was none. */
  LastHandshake?: string;
}

export function findPeer(status: LocalStatus, ip: string): LocalPeerStatus | undefined {
  for (const peer of Object.values(status.Peer ?? {})) if (peer.TailscaleIPs?.includes(ip)) return peer;
  return undefined;
}

export class LocalApiError extends Error {
  constructor(
    message: string,
    /** Errno of the socket connection (ENOENT, ECONNREFUSED: tailscaled is not there), when that is the cause. */
    readonly code?: string,
  ) {
    super(message);
    this.name = 'LocalApiError';
  }
}

export class LocalApiClient {
  private readonly agent: Agent;

  constructor(readonly socketPath: string) {
    this.agent = new Agent({ connect: { socketPath }, keepAliveTimeout: 5_000, connections: 2 });
  }

  async status(timeoutMs: number): Promise<LocalStatus> {
    // ?peers=true is the default; the status is small for the handful of peers a gateway sees.
    const body = await this.get('/localapi/v0/status', timeoutMs);
    return JSON.parse(body) as LocalStatus;
  }

  get(path: string, timeoutMs: number): Promise<string> {
    return this.call('GET', path, timeoutMs);
  }

  post(path: string, timeoutMs: number): Promise<string> {
    return this.call('POST', path, timeoutMs);
  }

  private async call(method: 'GET' | 'POST', path: string, timeoutMs: number): Promise<string> {
    let res;
    try {
      res = await request(`http://${LOCALAPI_HOST}${path}`, {
        method,
        dispatcher: this.agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new LocalApiError(`LocalAPI ${path} on ${this.socketPath}: ${e.code ?? e.message}`, e.code ?? e.name);
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new LocalApiError(`LocalAPI ${path}: HTTP ${res.statusCode} ${text.trim().slice(0, 200)}`);
    return text;
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

/** Every tailnet IP of every peer mapped to that peer, from one status snapshot. */
export function peersByIp(status: LocalStatus): Map<string, LocalPeerStatus> {
  const map = new Map<string, LocalPeerStatus>();
  for (const peer of Object.values(status.Peer ?? {})) {
    for (const ip of peer.TailscaleIPs ?? []) map.set(ip, peer);
  }
  return map;
}

/**
 * WireGuard's REJECT_AFTER_TIME: a session keeps carrying packets this long after its handshake. Within it a dial
 * needs no new handshake, and the handshake itself proves the peer was there.
 */
export const WIREGUARD_SESSION_MS = 180_000;

/** Go's time.Time as JSON: its zero value (0001-01-01) means "never". */
function goTime(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const ms = Date.parse(text);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

export function peerCheck(peer: LocalPeerStatus | undefined, now: number): PeerCheck {
  if (peer === undefined) return { online: undefined, liveSession: false };
  const handshake = goTime(peer.LastHandshake);
  const check: PeerCheck = { online: peer.Online === true, liveSession: handshake !== undefined && now - handshake < WIREGUARD_SESSION_MS };
  const lastSeen = goTime(peer.LastSeen);
  if (!check.online && lastSeen !== undefined) check.lastSeen = new Date(lastSeen).toISOString();
  return check;
}

export function peerLink(peer: LocalPeerStatus): PeerLink {
  const handshake = goTime(peer.LastHandshake);
  // CurAddr is the direct endpoint in use; without one, packets that flow at all go through the home DERP region.
  const relayed = peer.CurAddr ? false : peer.Relay ? true : null;
  return { lastHandshake: handshake === undefined ? null : new Date(handshake).toISOString(), relayed };
}
