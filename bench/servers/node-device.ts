// A minimal HTTP CONNECT proxy used as a candidate device-side stand-in (`--device node`): it parses
// only the CONNECT request line and relays with pipe. No auth, as a device proxy on the tailnet has none.
// Usage: [port] (default: any). Prints {"ready":true,"port":N} once listening on 127.0.0.1.
import net from 'node:net';

const CRLFCRLF = Buffer.from('\r\n\r\n');
const OK = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n');

function fail(client: net.Socket, status: string): void {
  client.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
}

const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
  let head: Buffer = Buffer.alloc(0);
  client.on('error', () => client.destroy());
  const onHead = (chunk: Buffer) => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const end = head.indexOf(CRLFCRLF);
    if (end < 0) {
      if (head.length > 16384) client.destroy();
      return;
    }
    client.off('data', onHead);
    client.pause();
    const line = head.toString('latin1', 0, head.indexOf('\r\n')).split(' ');
    const m = line[0] === 'CONNECT' ? /^\[?([^\]]+)\]?:(\d+)$/.exec(line[1] ?? '') : null;
    if (!m) return fail(client, '405 Method Not Allowed');
    const rest = head.subarray(end + 4);
    const upstream = net.connect({ host: m[1], port: Number(m[2]), noDelay: true, allowHalfOpen: true });
    upstream.once('error', () => {
      if (!client.destroyed) fail(client, '502 Bad Gateway');
      upstream.destroy();
    });
    upstream.once('connect', () => {
      upstream.removeAllListeners('error');
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.write(OK);
      if (rest.length > 0) upstream.write(rest);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  };
  client.on('data', onHead);
});
server.maxConnections = 100_000;
server.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0), backlog: 4096 }, () => {
  const addr = server.address() as net.AddressInfo;
  process.stdout.write(JSON.stringify({ ready: true, port: addr.port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
