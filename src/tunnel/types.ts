// What the tunnel pipeline is configured with; config.ts validates it from the environment.

export interface Timeouts {
  /** Client must finish the proxy handshake (request line + headers, or SOCKS greeting+auth+request) within this. */
  handshakeMs: number;
  /** Dial to the device plus the device's answer to our CONNECT must finish within this. */
  connectMs: number;
  /**
   * A forwarded request whose device has not begun its answer this long after the request was sent fails with 504.
   * Separate from idleMs, which only applies once an answer is flowing: a dead device must not hold a request longer
   * than it would hold a new tunnel.
   */
  responseHeaderMs: number;
  /** A tunnel with no bytes in either direction for this long is closed. */
  idleMs: number;
  /** On SIGTERM, open tunnels get this long to finish before they are cut. */
  shutdownGraceMs: number;
}

/** Milliseconds from an arbitrary origin, above 0 (lru-cache takes an entry stored at time 0 for one without a TTL). */
export interface Clock {
  now(): number;
}
