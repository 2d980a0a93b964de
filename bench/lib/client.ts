// Client side of every benchmark: opens a tunnel through an HTTP CONNECT or SOCKS5 proxy (RFC 1928/1929)
// and speaks the sink's tiny protocol through it. Hand-written on raw sockets so the load generator
// costs as little CPU as possible and every path is driven by exactly the same code.
import net from 'node:net';
import tls from 'node:tls';

/** `https`: HTTP CONNECT inside TLS to the proxy itself (curl's `--proxy https://`). */
export type ProxyKind = 'http' | 'socks5' | 'https';

export interface ProxySpec {
  kind: ProxyKind;
  host: string;
  port: number;
  /** username = password = key; absent for the device proxy itself (direct path). */
  key?: string;
  /**
   * A device proxy behind this one: the handshake above opens a tunnel to it, and the client then sends it
   * its own CONNECT for the target. How a client reaches a device through tailscaled's SOCKS5 server.
   */
  device?: { host: string; port: number };
  /** `https`: the CA (PEM) that signed the proxy's certificate, which is checked for the name `localhost`. */
  ca?: string;
  /** The client's own address (plain TCP only), e.g. one of 127.0.0.0/8 so a per-address throttle does not decide. */
  localAddress?: string;
}

export interface TargetSpec {
  host: string;
  port: number;
}

export class TunnelError extends Error {
  constructor(
    readonly stage: 'connect' | 'handshake' | 'rejected' | 'request' | 'timeout',
    message: string,
  ) {
    super(message);
    this.name = 'TunnelError';
  }
}

/**
 * Reads exactly what the handshake needs. Resolves with the bytes that arrived after the reply (if any),
 * which the caller must treat as tunnel payload.
 */
function readUntil(socket: net.Socket, done: (buf: Buffer) => number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new TunnelError('timeout', `no proxy reply within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let used: number;
      try {
        used = done(buf);
      } catch (err) {
        finish(err as Error);
        return;
      }
      if (used >= 0) finish(undefined, buf.subarray(used));
    };
    const onEnd = () => finish(new TunnelError('handshake', 'proxy closed the connection during the handshake'));
    const onError = (err: Error) => finish(new TunnelError('handshake', err.message));
    function finish(err: Error | undefined, rest?: Buffer) {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(rest!);
    }
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
  });
}

/**
 * Resolves with the socket once it emits `ready` ('connect' for TCP, 'secureConnect' once a TLS handshake is done: a
 * full handshake every time, as a new client makes).
 */
function connected(socket: net.Socket, ready: 'connect' | 'secureConnect', what: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TunnelError('timeout', `${what} timed out`));
    }, timeoutMs);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new TunnelError('connect', `${what}: ${err.code ?? err.message}`));
    });
  });
}

function connectTcp(host: string, port: number, timeoutMs: number, localAddress?: string): Promise<net.Socket> {
  return connected(net.connect({ host, port, noDelay: true, localAddress }), 'connect', `TCP connect to ${host}:${port}`, timeoutMs);
}

/** A TLS connection to the proxy, whose certificate is checked against `ca` for the name localhost. */
function connectTls(host: string, port: number, ca: string | undefined, timeoutMs: number): Promise<net.Socket> {
  const socket = tls.connect({ host, port, ca, servername: 'localhost' });
  socket.setNoDelay(true);
  return connected(socket, 'secureConnect', `TLS connect to ${host}:${port}`, timeoutMs);
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

async function httpConnect(socket: net.Socket, proxy: ProxySpec, target: TargetSpec, timeoutMs: number): Promise<Buffer> {
  const authority = `${target.host}:${target.port}`;
  let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
  if (proxy.key !== undefined) {
    head += `Proxy-Authorization: Basic ${Buffer.from(`${proxy.key}:${proxy.key}`).toString('base64')}\r\n`;
  }
  socket.write(head + '\r\n');
  return readUntil(
    socket,
    (buf) => {
      const end = buf.indexOf(CRLFCRLF);
      if (end < 0) {
        if (buf.length > 16384) throw new TunnelError('handshake', 'oversized CONNECT reply');
        return -1;
      }
      const statusLine = buf.toString('latin1', 0, buf.indexOf('\r\n'));
      const status = Number(statusLine.split(' ')[1]);
      if (status !== 200) throw new TunnelError('rejected', `CONNECT answered ${statusLine}`);
      return end + 4;
    },
    timeoutMs,
  );
}

async function socks5Connect(socket: net.Socket, proxy: ProxySpec, target: TargetSpec, timeoutMs: number): Promise<Buffer> {
  // Sequential round trips, as curl does: not every server accepts a pipelined greeting+auth+request.
  socket.write(proxy.key === undefined ? Buffer.from([5, 1, 0]) : Buffer.from([5, 1, 2]));
  await readUntil(
    socket,
    (buf) => {
      if (buf.length < 2) return -1;
      if (buf[0] !== 5 || buf[1] === 0xff) throw new TunnelError('rejected', `SOCKS5 method reply ${buf[0]},${buf[1]}`);
      return 2;
    },
    timeoutMs,
  );
  if (proxy.key !== undefined) {
    const k = Buffer.from(proxy.key);
    socket.write(Buffer.concat([Buffer.from([1, k.length]), k, Buffer.from([k.length]), k]));
    await readUntil(
      socket,
      (buf) => {
        if (buf.length < 2) return -1;
        if (buf[1] !== 0) throw new TunnelError('rejected', `SOCKS5 auth status ${buf[1]}`);
        return 2;
      },
      timeoutMs,
    );
  }
  const ip = net.isIPv4(target.host) ? target.host.split('.').map(Number) : null;
  const port = [target.port >> 8, target.port & 0xff];
  let req: Buffer;
  if (ip) req = Buffer.from([5, 1, 0, 1, ...ip, ...port]);
  else {
    const h = Buffer.from(target.host);
    req = Buffer.concat([Buffer.from([5, 1, 0, 3, h.length]), h, Buffer.from(port)]);
  }
  socket.write(req);
  return readUntil(
    socket,
    (buf) => {
      if (buf.length < 5) return -1;
      if (buf[1] !== 0) throw new TunnelError('rejected', `SOCKS5 reply code ${buf[1]}`);
      const atyp = buf[3];
      const len = atyp === 1 ? 10 : atyp === 4 ? 22 : 7 + buf[4]!;
      return buf.length < len ? -1 : len;
    },
    timeoutMs,
  );
}

/** A socket whose handshake has finished: what follows is the sink's byte stream. */
export async function openTunnel(proxy: ProxySpec, target: TargetSpec, timeoutMs = 10_000): Promise<net.Socket> {
  const socket = proxy.kind === 'https' ? await connectTls(proxy.host, proxy.port, proxy.ca, timeoutMs) : await connectTcp(proxy.host, proxy.port, timeoutMs, proxy.localAddress);
  try {
    const first = proxy.device ?? target;
    let rest = proxy.kind !== 'socks5' ? await httpConnect(socket, proxy, first, timeoutMs) : await socks5Connect(socket, proxy, first, timeoutMs);
    if (proxy.device) {
      // Nothing can follow a SOCKS5/CONNECT reply before we speak to the device.
      if (rest.length > 0) throw new TunnelError('handshake', 'unexpected bytes before the device CONNECT');
      rest = await httpConnect(socket, { kind: 'http', host: proxy.device.host, port: proxy.device.port }, target, timeoutMs);
    }
    if (rest.length > 0) socket.unshift(rest);
    return socket;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

// ---- sink protocol (see servers/sink.ts) ----

export const SMALL_REQUEST = Buffer.from('GET /small HTTP/1.1\r\nHost: sink\r\n\r\n');
/** The sink's answer to SMALL_REQUEST, byte for byte. */
export const SMALL_RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');

/**
 * Runs one exchange on an open tunnel: `begin` writes, `onData` consumes and returns true when the
 * exchange is complete (or throws). The socket's listeners are removed when it ends either way.
 */
function exchange(socket: net.Socket, timeoutMs: number, what: string, begin: () => void, onData: (chunk: Buffer) => boolean, onDrain?: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new TunnelError('timeout', `${what}: not done within ${timeoutMs} ms`)), timeoutMs);
    const data = (chunk: Buffer) => {
      try {
        if (onData(chunk)) finish();
      } catch (err) {
        finish(err as Error);
      }
    };
    const end = () => finish(new TunnelError('request', `${what}: tunnel closed`));
    const error = (err: Error) => finish(new TunnelError('request', `${what}: ${err.message}`));
    function finish(err?: Error) {
      clearTimeout(timer);
      socket.off('data', data);
      socket.off('end', end);
      socket.off('error', error);
      if (onDrain) socket.off('drain', onDrain);
      if (err) reject(err);
      else resolve();
    }
    socket.on('data', data);
    socket.once('end', end);
    socket.once('error', error);
    if (onDrain) socket.on('drain', onDrain);
    begin();
  });
}

/** One small request/response on an open tunnel (keep-alive: the tunnel stays usable). */
export function smallRequest(socket: net.Socket, timeoutMs = 10_000): Promise<void> {
  let got = 0;
  return exchange(
    socket,
    timeoutMs,
    'small request',
    () => socket.write(SMALL_REQUEST),
    (chunk) => (got += chunk.length) >= SMALL_RESPONSE.length,
  );
}

const UPLOAD_CHUNK = Buffer.alloc(256 * 1024, 0x61);

/** Sends `bytes` to the sink and waits for its acknowledgement that all of them arrived. */
export function upload(socket: net.Socket, bytes: number, timeoutMs: number): Promise<void> {
  let left = bytes;
  let ack = '';
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, UPLOAD_CHUNK.length);
      left -= n;
      if (!socket.write(n === UPLOAD_CHUNK.length ? UPLOAD_CHUNK : UPLOAD_CHUNK.subarray(0, n))) return;
    }
  };
  return exchange(
    socket,
    timeoutMs,
    `upload of ${bytes} bytes`,
    () => {
      socket.write(`UP ${bytes}\n`);
      pump();
    },
    (chunk) => {
      ack += chunk.toString('latin1');
      if (!ack.includes('\n')) return false;
      if (!ack.startsWith('U ')) throw new TunnelError('request', `unexpected sink ack ${JSON.stringify(ack)}`);
      return true;
    },
    pump,
  );
}

/** Asks the sink for `bytes` and counts them arriving. */
export function download(socket: net.Socket, bytes: number, timeoutMs: number): Promise<void> {
  let got = 0;
  return exchange(
    socket,
    timeoutMs,
    `download of ${bytes} bytes`,
    () => socket.write(`DOWN ${bytes}\n`),
    (chunk) => (got += chunk.length) >= bytes,
  );
}
