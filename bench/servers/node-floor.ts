// node-floor (issue 14): the least a correct HTTP CONNECT gateway on raw `net` has to do per tunnel, so every run
// shows how far tailgate's per-tunnel cost is above what Node itself needs. Per connection: read the request head by
// hand, check `Proxy-Authorization: Basic key:key` in constant time, CONNECT to the device proxy the way tailgate
// does, answer 200 after the device's 2xx, then pipe() both ways with half-close passed on. Nothing else: no API,
// no limits, no metrics, no idle timeout (only a handshake timeout, which any gateway facing clients needs).
// Usage: node-floor.ts <key> <device host:port> [port]. Prints {"ready":true,"port":N} once listening on 127.0.0.1.
import net from 'node:net';
import { timingSafeEqual } from 'node:crypto';

const [key, device, portArg] = process.argv.slice(2);
if (!key || !device || !device.includes(':')) {
  process.stderr.write('usage: node-floor.ts <key> <device host:port> [port]\n');
  process.exit(2);
}
const deviceHost = device.slice(0, device.lastIndexOf(':'));
const devicePort = Number(device.slice(device.lastIndexOf(':') + 1));

const EXPECTED = Buffer.from(`${key}:${key}`);
const MAX_HEAD = 16 * 1024;
const HANDSHAKE_MS = 10_000;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const OK = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n');
const AUTH = /^proxy-authorization:[ \t]*basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*\r?$/im;
const TARGET = /^CONNECT ((?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}) HTTP\/1\.[01]$/;
const STATUS = /^HTTP\/1\.[01] (\d{3})/;

const answer = (status: string, extra = '') => `HTTP/1.1 ${status}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`;
const BAD_REQUEST = answer('400 Bad Request');
const AUTH_REQUIRED = answer('407 Proxy Authentication Required', 'Proxy-Authenticate: Basic realm="node-floor"\r\n');
const BAD_GATEWAY = answer('502 Bad Gateway');

function refuse(client: net.Socket, response: string): void {
  client.end(response);
  client.destroySoon();
}

/** Constant time over the expected credentials: a wrong key of the right length takes as long as the right one. */
function keyMatches(head: string): boolean {
  const m = AUTH.exec(head);
  if (m === null) return false;
  const given = Buffer.from(m[1]!, 'base64');
  return given.length === EXPECTED.length && timingSafeEqual(given, EXPECTED);
}

/** On a socket's close: a clean close (both directions ended) leaves the peer to flush; anything else cuts it. */
function linkClose(a: net.Socket, b: net.Socket): void {
  a.on('close', () => {
    if (!(a.readableEnded && a.writableFinished)) b.destroy();
  });
}

function onHead(client: net.Socket, head: Buffer, end: number): void {
  const text = head.toString('latin1', 0, end);
  const line = TARGET.exec(text.slice(0, text.indexOf('\r\n') >>> 0));
  if (line === null) return refuse(client, BAD_REQUEST);
  if (!keyMatches(text)) return refuse(client, AUTH_REQUIRED);
  const authority = line[1]!;
  const early = head.subarray(end + 4);
  const upstream = net.connect({ host: deviceHost, port: devicePort, noDelay: true, allowHalfOpen: true });
  upstream.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  let reply: Buffer | null = null;
  const fail = () => {
    upstream.destroy();
    if (!client.destroyed) refuse(client, BAD_GATEWAY);
  };
  upstream.on('error', fail);
  const onReply = (chunk: Buffer) => {
    reply = reply === null ? chunk : Buffer.concat([reply, chunk]);
    const replyEnd = reply.indexOf(CRLFCRLF);
    if (replyEnd < 0) {
      if (reply.length > MAX_HEAD) fail();
      return;
    }
    upstream.off('data', onReply);
    upstream.off('end', fail);
    upstream.pause();
    const status = STATUS.exec(reply.toString('latin1', 0, Math.min(replyEnd, 16)));
    if (status === null || status[1]![0] !== '2') return fail();
    upstream.off('error', fail);
    if (client.destroyed) return void upstream.destroy();
    client.setTimeout(0);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    linkClose(client, upstream);
    linkClose(upstream, client);
    // The target's first bytes may have come with the device's reply.
    if (reply.length > replyEnd + 4) upstream.unshift(reply.subarray(replyEnd + 4));
    client.write(OK);
    if (early.length > 0) upstream.write(early);
    client.pipe(upstream);
    upstream.pipe(client);
  };
  upstream.on('data', onReply);
  upstream.on('end', fail);
}

const server = net.createServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: false }, (client) => {
  let head: Buffer | null = null;
  client.setTimeout(HANDSHAKE_MS, () => client.destroy());
  client.on('error', () => client.destroy());
  const onData = (chunk: Buffer) => {
    head = head === null ? chunk : Buffer.concat([head, chunk]);
    const end = head.indexOf(CRLFCRLF);
    if (end < 0) {
      if (head.length > MAX_HEAD) client.destroy();
      return;
    }
    client.off('data', onData);
    client.pause();
    onHead(client, head, end);
  };
  client.on('data', onData);
  // A client that ends before its head is complete gets nothing more.
  client.once('end', () => {
    if (head === null || head.indexOf(CRLFCRLF) < 0) client.destroy();
  });
});
server.maxConnections = 100_000;
server.listen({ host: '127.0.0.1', port: Number(portArg ?? 0), backlog: 4096 }, () => {
  const addr = server.address() as net.AddressInfo;
  process.stdout.write(JSON.stringify({ ready: true, port: addr.port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
