// apify's proxy-chain as a gateway: HTTP only (it has no SOCKS server). Auth follows tailgate's contract
// (username = password = key); the key maps to the device proxy given on the command line, which
// prepareRequestFunction returns as upstreamProxyUrl.
// Usage: proxy-chain.ts <key> <device host:port> [port]. Prints {"ready":true,"port":N}.
import { Server } from 'proxy-chain';

const [key, device, port] = process.argv.slice(2);
if (!key || !device) {
  process.stderr.write('usage: proxy-chain.ts <key> <device host:port>\n');
  process.exit(2);
}
const upstreamProxyUrl = `http://${device}`;

const server = new Server({
  host: '127.0.0.1',
  port: Number(port ?? 0),
  verbose: false,
  prepareRequestFunction: ({ username, password }) => {
    if (username !== key || password !== key) return { requestAuthentication: true };
    return { upstreamProxyUrl };
  },
});
// proxy-chain logs every failed connection otherwise; the benchmark counts failures itself.
server.on('requestFailed', () => {});
server.server.maxConnections = 100_000;
await server.listen();
process.stdout.write(JSON.stringify({ ready: true, port: server.port }) + '\n');
process.on('SIGTERM', () => {
  void server.close(true).then(() => process.exit(0));
});
