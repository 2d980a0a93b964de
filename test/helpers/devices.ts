// The device side of a tunnel. HTTP devices are the third-party `proxy` package (createProxy). No SOCKS5
// *server* ships in our node_modules (`socks` is a client only, proxy-chain can chain to SOCKS but not
// serve it), so the SOCKS5 device is the small test-only server below: RFC 1928 CONNECT without auth,
// IPv4 / IPv6 / domain (resolved here, at the egress), real reply codes from real connect errors.
import http from 'node:http';
import net from 'node:net';
import { createProxy } from 'proxy';
import { closeServer, listen, type Listening } from './targets.js';

export interface Device extends Listening {
  server: net.Server;
  /** Targets as the device received them (CONNECT authority, or SOCKS host:port with its ATYP). */
  seen: string[];
  connections(): Promise<number>;
}

function counter(server: net.Server): () => Promise<number> {
  return () => new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** `requireAuth`: the device's proxy answers 407 to everything (a misconfigured device). */
export async function startHttpDevice(host = '127.0.0.1', opts: { requireAuth?: boolean } = {}): Promise<Device> {
  const seen: string[] = [];
  const server = http.createServer();
  if (opts.requireAuth) Object.assign(server, { authenticate: () => false });
  server.on('connect', (req: http.IncomingMessage) => seen.push(`CONNECT ${req.url}`));
  server.on('request', (req: http.IncomingMessage) => seen.push(`${req.method} ${req.url}`));
  createProxy(server);
  const port = await listen(server, host);
  return { port, host, server, seen, connections: counter(server), close: () => closeServer(server) };
}

function socksCode(err: NodeJS.ErrnoException): number {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 0x05;
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'EAI_AGAIN':
      return 0x04;
    case 'ENETUNREACH':
      return 0x03;
    case 'ETIMEDOUT':
      return 0x06;
    default:
      return 0x01;
  }
}

function reply(code: number): Buffer {
  return Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
}

/** Test-only SOCKS5 device (see the file comment for why it exists). */
export async function startSocksDevice(host = '127.0.0.1'): Promise<Device> {
  const seen: string[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    let buf = Buffer.alloc(0);
    let stage: 'greeting' | 'request' | 'busy' = 'greeting';
    client.on('error', () => client.destroy());
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (stage === 'greeting') {
        if (buf.length < 2 || buf.length < 2 + buf[1]!) return;
        if (buf[0] !== 5 || !buf.subarray(2, 2 + buf[1]!).includes(0)) return void client.end(Buffer.from([5, 0xff]));
        buf = buf.subarray(2 + buf[1]!);
        stage = 'request';
        client.write(Buffer.from([5, 0]));
      }
      if (stage !== 'request' || buf.length < 5) return;
      let targetHost: string;
      let end: number;
      if (buf[3] === 1) {
        end = 10;
        if (buf.length < end) return;
        targetHost = [...buf.subarray(4, 8)].join('.');
      } else if (buf[3] === 4) {
        end = 22;
        if (buf.length < end) return;
        const groups: string[] = [];
        for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(4 + 2 * i).toString(16));
        targetHost = groups.join(':');
      } else if (buf[3] === 3) {
        end = 5 + buf[4]! + 2;
        if (buf.length < end) return;
        targetHost = buf.toString('latin1', 5, 5 + buf[4]!);
      } else {
        return void client.end(reply(0x08));
      }
      if (buf[1] !== 1) return void client.end(reply(0x07));
      const port = buf.readUInt16BE(end - 2);
      seen.push(`${buf[3] === 3 ? 'domain' : buf[3] === 1 ? 'ipv4' : 'ipv6'} ${targetHost} ${port}`);
      const early = buf.subarray(end);
      stage = 'busy';
      client.off('data', onData);
      client.pause();
      const upstream = net.connect({ host: targetHost, port, allowHalfOpen: true });
      upstream.once('error', (err: NodeJS.ErrnoException) => {
        if (client.writable) client.end(reply(socksCode(err)));
        else client.destroy();
      });
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
        client.write(reply(0));
        if (early.length > 0) upstream.write(early);
        client.pipe(upstream);
        upstream.pipe(client);
      });
    };
    client.on('data', onData);
  });
  const port = await listen(server, host);
  return { port, host, server, seen, connections: counter(server), close: () => closeServer(server) };
}

/** A raw TCP device whose connections `serve` handles; closing it destroys every connection it still holds. */
async function startRawDevice(host: string, seen: string[], serve: (s: net.Socket) => void): Promise<Device> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.on('close', () => sockets.delete(s));
    serve(s);
  });
  const port = await listen(server, host);
  return {
    port,
    host,
    server,
    seen,
    connections: counter(server),
    close: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
}

/** A "device" that accepts connections and never says a word: the connect timeout must fire. */
export function startSilentDevice(host = '127.0.0.1'): Promise<Device> {
  // Reads (and drops) so that it notices when the gateway hangs up; it just never answers.
  return startRawDevice(host, [], (s) => s.resume());
}

/**
 * An HTTP device that answers the first request on each connection and then goes silent on it while keeping it open:
 * what a device that dies with a kept-alive connection looks like from the gateway. `seen` gets every request line.
 */
export function startOneAnswerDevice(host = '127.0.0.1'): Promise<Device> {
  const seen: string[] = [];
  return startRawDevice(host, seen, (s) => {
    let head = '';
    let answered = false;
    s.setEncoding('latin1');
    s.on('data', (chunk: string) => {
      head += chunk;
      for (let end = head.indexOf('\r\n\r\n'); end >= 0; end = head.indexOf('\r\n\r\n')) {
        seen.push(head.slice(0, head.indexOf('\r\n')));
        head = head.slice(end + 4);
        if (answered) continue;
        answered = true;
        s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nfirst\n');
      }
    });
  });
}

/** A port nothing listens on (bound once to get it from the kernel, then released): connects are refused. */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  const port = await listen(server, host);
  await closeServer(server);
  return port;
}
