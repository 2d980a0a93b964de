// How each FailureReason reaches a client: one table per listener, so both stay consistent with the
// comments on FailureReason in core/failure.ts.
import type { FailureReason } from '../core/failure.js';
import { SocksReply, type SocksReplyCode } from '../protocol/socks5.js';
import type { Refusal } from '../tunnel/pipeline.js';

export interface HttpFailure {
  status: number;
  /** One line, shown to the customer; never carries addresses or keys. */
  text: string;
}

/** The challenge every 407 carries. */
export const PROXY_AUTHENTICATE = 'Basic realm="tailgate"';
export const AUTH_REQUIRED_TEXT = 'proxy authentication required: use the key as both user name and password';
/** The key store failed: not the client's fault, so not a 407. */
export const KEY_STORE_TEXT = 'key lookup is unavailable, try again shortly';

export const HTTP_FAILURES: Readonly<Record<FailureReason, HttpFailure>> = {
  'network-down': { status: 503, text: 'network unreachable: the tailnet is not available' },
  offline: { status: 502, text: 'the device bound to this key is offline' },
  unreachable: { status: 502, text: 'host unreachable through the device' },
  refused: { status: 502, text: 'connection refused' },
  timeout: { status: 504, text: 'the device did not answer in time' },
  'not-allowed': { status: 502, text: 'the device proxy refused the connection' },
  protocol: { status: 502, text: 'the device proxy sent an invalid answer' },
  no_device: { status: 502, text: 'no device of this key is available' },
  session_device_down: { status: 502, text: "the session's device is down" },
  error: { status: 502, text: 'connection through the device failed' },
};

export const SOCKS_FAILURES: Readonly<Record<FailureReason, SocksReplyCode>> = {
  'network-down': SocksReply.NetworkUnreachable,
  offline: SocksReply.HostUnreachable,
  unreachable: SocksReply.HostUnreachable,
  refused: SocksReply.ConnectionRefused,
  timeout: SocksReply.TtlExpired,
  'not-allowed': SocksReply.NotAllowed,
  protocol: SocksReply.GeneralFailure,
  no_device: SocksReply.HostUnreachable,
  session_device_down: SocksReply.HostUnreachable,
  error: SocksReply.GeneralFailure,
};

/** An admission refusal over HTTP: 429, with the RFC 9209 Proxy-Status and, when known, Retry-After. */
export const REFUSAL_STATUS = 429;

export function refusalHeaders(refusal: Refusal): Record<string, string> {
  const details = refusal.details === undefined ? '' : `; details=${JSON.stringify(refusal.details)}`;
  const headers: Record<string, string> = { 'Proxy-Status': `tailgate; error=${refusal.proxyStatus}${details}` };
  if (refusal.retryAfterS !== undefined) headers['Retry-After'] = String(Math.max(0, Math.ceil(refusal.retryAfterS)));
  return headers;
}

/**
 * The headers of a 407 for user name parameters that are refused: the challenge, since the credentials must change,
 * and the parameter's fault as RFC 9209 details (the `X-Tailgate-Error` label stays one word).
 */
export function userParameterHeaders(detail: string): Record<string, string> {
  return { 'Proxy-Authenticate': PROXY_AUTHENTICATE, 'Proxy-Status': `tailgate; error=http_request_denied; details=${JSON.stringify(detail)}` };
}

/** An admission refusal over SOCKS5: "connection not allowed by ruleset". */
export const SOCKS_REFUSED: SocksReplyCode = SocksReply.NotAllowed;
