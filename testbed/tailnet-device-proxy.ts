// The egress side of a device: the third-party `proxy` package (a plain HTTP proxy with CONNECT), run inside the
// device's own network namespace so that whatever it connects to sees the device's address.
// Usage: node --import tsx testbed/tailnet-device-proxy.ts PORT
import http from 'node:http';
import { createProxy } from 'proxy';

const port = Number(process.argv[2]);
const server = createProxy(http.createServer());
server.listen(port, '127.0.0.1', () => process.stdout.write(`ready ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
