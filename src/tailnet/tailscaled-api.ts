// The two LocalAPI calls the supervisor makes, behind an interface: the real one goes to tailscaled's socket,
// tests answer them themselves.
import { unlessAborted } from './clock.js';
import type { LocalApiClient, LocalStatus } from './localapi.js';

export interface TailscaledApi {
  status(timeoutMs: number, signal: AbortSignal): Promise<LocalStatus>;
  /** A TSMP ping through WireGuard: null once answered, else tailscaled's error text. */
  ping(ip: string, timeoutMs: number, signal: AbortSignal): Promise<string | null>;
  close(): Promise<void>;
}

export function localApiOf(client: LocalApiClient): TailscaledApi {
  return {
    status: (timeoutMs, signal) => unlessAborted(client.status(timeoutMs), signal),
    async ping(ip, timeoutMs, signal) {
      const path = `/localapi/v0/ping?ip=${encodeURIComponent(ip)}&type=TSMP`;
      const answer = JSON.parse(await unlessAborted(client.post(path, timeoutMs), signal)) as { Err?: string };
      return answer.Err || null;
    },
    close: () => client.close(),
  };
}
