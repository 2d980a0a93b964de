// Client side of the tailnet scene (curl, for the documented commands, is ./curl.ts): a raw CONNECT tunnel for a
// long-lived connection, and the destination servers that report which address a connection came from.
import http from 'node:http';
import net from 'node:net';

/** An HTTP server answering every request with the address the connection came from, as JSON. */
export async function startWhoami(host: string): Promise<{ server: http.Server; url: string; port: number }> {
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ remote: req.socket.remoteAddress, path: req.url }));
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as net.AddressInfo).port;
  return { server, url: `http://${host}:${port}`, port };
}

/** A line echo server that prefixes each answer with the peer address, so a long tunnel proves its route on every line. */
export async function startEcho(host: string): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((socket) => {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        socket.write(`${socket.remoteAddress} ${buf.slice(0, nl)}\n`);
        buf = buf.slice(nl + 1);
      }
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** A CONNECT tunnel through the gateway's HTTP listener, kept open for line exchanges. */
export class LineTunnel {
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        this.waiters.shift()?.(line);
      }
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w('<closed>');
    });
    socket.on('error', () => undefined);
  }

  static open(proxyPort: number, key: string, target: string, timeoutMs = 15_000): Promise<LineTunnel> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: proxyPort });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`CONNECT ${target}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      let head = '';
      const onData = (chunk: Buffer) => {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        clearTimeout(timer);
        socket.off('data', onData);
        const status = head.slice(0, head.indexOf('\r\n'));
        if (!/^HTTP\/1\.[01] 200/.test(status)) {
          socket.destroy();
          reject(new Error(`CONNECT ${target}: ${status}`));
          return;
        }
        const tunnel = new LineTunnel(socket);
        const rest = head.slice(end + 4);
        if (rest) socket.emit('data', rest);
        resolve(tunnel);
      };
      socket.on('data', onData);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      const auth = Buffer.from(`${key}:${key}`).toString('base64');
      socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
    });
  }

  /** Sends a line and resolves with the echo (or "<closed>" / "<timeout>"). */
  ask(line: string, timeoutMs = 10_000): Promise<string> {
    if (this.closed) return Promise.resolve('<closed>');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve('<timeout>');
      }, timeoutMs);
      const done = (l: string) => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push(done);
      this.socket.write(`${line}\n`);
    });
  }

  waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
