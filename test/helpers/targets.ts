// Local destinations for proxy tests: HTTP and HTTPS servers (self-signed certificate made with openssl
// at test start) and a raw TCP echo server, on 127.0.0.1 or ::1, ephemeral ports.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Listening {
  port: number;
  host: string;
  close(): Promise<void>;
}

export function listen(server: net.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if ('closeAllConnections' in server) (server as http.Server).closeAllConnections();
    server.close(() => resolve());
  });
}

/** Deterministic payload of `n` bytes, so a test can check what arrived without keeping a copy around. */
export function payload(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
  return b;
}

export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * Routes: `/echo` answers JSON with method, url, headers and the body's length and sha256;
 * `/chunked` streams a body in several chunks without Content-Length; `/big?n=BYTES` sends payload(n);
 * anything else says hello.
 */
function targetHandler(label: string) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/echo') {
        const body = Buffer.concat(chunks);
        const out = JSON.stringify({ target: label, method: req.method, url: req.url, headers: req.headers, bodyLength: body.length, bodySha256: sha256(body) });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
        res.end(out);
      } else if (url.pathname === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        let i = 0;
        const tick = () => {
          if (i === 5) return res.end('end\n');
          res.write(`chunk ${i++}\n`);
          setImmediate(tick);
        };
        tick();
      } else if (url.pathname === '/big') {
        const n = Number(url.searchParams.get('n') ?? '1048576');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
        res.end(payload(n));
      } else {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`hello from ${label}\n`);
      }
    });
  };
}

export async function startHttpTarget(host = '127.0.0.1'): Promise<Listening> {
  const server = http.createServer(targetHandler(`http ${host}`));
  const port = await listen(server, host);
  return { port, host, close: () => closeServer(server) };
}

export interface TlsMaterial {
  dir: string;
  certFile: string;
  cert: Buffer;
  key: Buffer;
  remove(): Promise<void>;
}

/** Self-signed certificate for localhost, 127.0.0.1 and ::1. */
export async function makeSelfSignedCert(): Promise<TlsMaterial> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tailgate-tls-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await run(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1', '-keyout', keyFile, '-out', certFile],
    { timeout: 20_000 },
  );
  return { dir, certFile, cert: await readFile(certFile), key: await readFile(keyFile), remove: () => rm(dir, { recursive: true, force: true }) };
}

export async function startHttpsTarget(tls: TlsMaterial, host = '127.0.0.1'): Promise<Listening> {
  const server = https.createServer({ cert: tls.cert, key: tls.key }, targetHandler(`https ${host}`));
  const port = await listen(server, host);
  return { port, host, close: () => closeServer(server) };
}

/** Echoes bytes back and half-closes when the client does: exercises the relay's byte path and half-close. */
export interface EchoTarget extends Listening {
  server: net.Server;
  connections(): Promise<number>;
}

export async function startEchoTarget(host = '127.0.0.1'): Promise<EchoTarget> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  const port = await listen(server, host);
  const connections = () => new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
  return { port, host, server, connections, close: () => closeServer(server) };
}
