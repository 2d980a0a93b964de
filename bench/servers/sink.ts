// The far end of every tunnel. One line-oriented protocol, commands on a connection in any order:
//   GET ...\r\n\r\n  -> a fixed 2-byte HTTP/1.1 response (the "one small request" of the setup benchmark)
//   UP <n>\n          -> swallows n bytes, then answers "U <n>\n"
//   DOWN <n>\n        -> sends n bytes
// Usage: [port [host]] (default: any port on 127.0.0.1). Prints {"ready":true,"port":N} once listening.
import net from 'node:net';
import { SMALL_RESPONSE } from '../lib/client.js';

const DOWN_CHUNK = Buffer.alloc(256 * 1024, 0x62);

interface State {
  /** Bytes of the current UP still to swallow; 0 when reading commands. */
  upLeft: number;
  upTotal: number;
  pending: string;
}

function sendDown(socket: net.Socket, bytes: number): void {
  let left = bytes;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, DOWN_CHUNK.length);
      left -= n;
      if (!socket.write(n === DOWN_CHUNK.length ? DOWN_CHUNK : DOWN_CHUNK.subarray(0, n))) {
        socket.once('drain', pump);
        return;
      }
    }
  };
  pump();
}

function onData(socket: net.Socket, st: State, chunk: Buffer): void {
  let off = 0;
  while (off < chunk.length) {
    if (st.upLeft > 0) {
      const take = Math.min(st.upLeft, chunk.length - off);
      st.upLeft -= take;
      off += take;
      if (st.upLeft === 0) socket.write(`U ${st.upTotal}\n`);
      continue;
    }
    // Commands are tiny; accumulate text until a full one is there.
    st.pending += chunk.toString('latin1', off);
    off = chunk.length;
    for (;;) {
      if (st.pending.startsWith('GET ')) {
        const end = st.pending.indexOf('\r\n\r\n');
        if (end < 0) break;
        st.pending = st.pending.slice(end + 4);
        socket.write(SMALL_RESPONSE);
        continue;
      }
      const nl = st.pending.indexOf('\n');
      if (nl < 0) {
        if (st.pending.length > 4096) socket.destroy();
        break;
      }
      const [cmd, arg] = st.pending.slice(0, nl).split(' ');
      const n = Number(arg);
      const rest = st.pending.slice(nl + 1);
      st.pending = '';
      if (cmd === 'UP' && n > 0) {
        st.upLeft = n;
        st.upTotal = n;
        // Whatever followed the command line is upload payload: feed it back through the byte path.
        if (rest.length > 0) onData(socket, st, Buffer.from(rest, 'latin1'));
        return;
      }
      if (cmd === 'DOWN' && n > 0) sendDown(socket, n);
      else {
        socket.destroy();
        return;
      }
      st.pending = rest;
    }
  }
}

const server = net.createServer({ noDelay: true, allowHalfOpen: false }, (socket) => {
  const st: State = { upLeft: 0, upTotal: 0, pending: '' };
  socket.on('data', (chunk: Buffer) => onData(socket, st, chunk));
  socket.on('error', () => socket.destroy());
});
server.maxConnections = 100_000;
server.listen({ host: process.argv[3] ?? '127.0.0.1', port: Number(process.argv[2] ?? 0), backlog: 4096 }, () => {
  const addr = server.address() as net.AddressInfo;
  process.stdout.write(JSON.stringify({ ready: true, port: addr.port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
