/**
 * Why a connection attempt failed, in the terms both listeners translate into their own replies
 * (HTTP status, SOCKS5 reply code; the tables are in proxy/failures.ts). Kept small on purpose: clients can act on
 * these and nothing finer.
 */
export type FailureReason =
  | 'network-down' // tailnet (or our path to it) is not up: HTTP 503, SOCKS 0x03
  | 'offline' // device known to be offline: HTTP 502, SOCKS 0x04
  | 'unreachable' // no route to the host: HTTP 502, SOCKS 0x04
  | 'refused' // TCP RST: HTTP 502, SOCKS 0x05
  | 'timeout' // no answer in time: HTTP 504, SOCKS 0x06
  | 'not-allowed' // the device proxy refused us (auth, ACL): HTTP 502, SOCKS 0x02
  | 'protocol' // the device proxy spoke something we do not understand: HTTP 502, SOCKS 0x01
  | 'no_device' // none of the key's devices is eligible (all down, or none left by the filters): HTTP 502, SOCKS 0x04
  | 'session_device_down' // a strict session's device is down: HTTP 502, SOCKS 0x04
  | 'error'; // anything else: HTTP 502, SOCKS 0x01

export class DialError extends Error {
  /**
   * The TCP connection to the device had been made when this failed, so it is about what lies behind the device (its
   * proxy's answer about the destination), not the device itself. Set by the device connector.
   */
  dialed = false;

  constructor(
    readonly reason: FailureReason,
    message: string,
  ) {
    super(message);
    this.name = 'DialError';
  }
}

/** Anything a dial threw, as a DialError (a bare error becomes reason 'error' with its message). */
export function asDialError(err: unknown): DialError {
  if (err instanceof DialError) return err;
  return new DialError('error', err instanceof Error ? err.message : String(err));
}

/** The reason behind a socket error code (err.code) from connecting to, or talking with, a device. */
export function reasonFromErrno(code: string | undefined): FailureReason {
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unreachable';
    case 'ENETUNREACH':
    case 'ENETDOWN':
      return 'network-down';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return 'error';
  }
}
