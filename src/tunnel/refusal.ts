// What every front end answers when a tunnel is turned away before any device is dialled (limits, admission policies).

/** Why an admission policy turned a tunnel away, in the terms every front end can answer with. */
export interface Refusal {
  /** The `X-Tailgate-Error` label: one word, one meaning. */
  reason: string;
  /** RFC 9209 error type for the `Proxy-Status` header. */
  proxyStatus: 'connection_limit_reached' | 'http_request_denied';
  /** Proxy-Status `details`, when the error type alone does not say it. */
  details?: string;
  /** Seconds until trying again can succeed, when known (`Retry-After`). */
  retryAfterS?: number;
  /** One line for the client; never a key or an address. */
  text: string;
}
