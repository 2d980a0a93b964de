// A raw SOCKS5 client for the gateway tests: greeting, RFC 1929 credentials (key as user name and password) and, when
// asked, a CONNECT to 127.0.0.1:connectPort; what the server answered at each step, and whether it then closed.
import net from 'node:net';

export interface SocksAttempt {
  /** RFC 1929 status (0 = accepted), -1 if none came. */
  auth: number;
  /** The CONNECT reply code, -1 if none came (auth refused, or no CONNECT asked). */
  reply: number;
  /** The server closed the connection after its last answer. */
  closed: boolean;
}

export function socksAttempt(socksPort: number, key: string, opts: { from?: string; connectPort?: number } = {}): Promise<SocksAttempt> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port: socksPort, host: '127.0.0.1', ...(opts.from === undefined ? {} : { localAddress: opts.from }) });
    s.setTimeout(5_000, () => s.destroy(new Error('no SOCKS answer')));
    s.once('error', reject);
    const k = Buffer.from(key);
    const result: SocksAttempt = { auth: -1, reply: -1, closed: false };
    let step = 0;
    let got = Buffer.alloc(0);
    const finish = (closed: boolean) => {
      result.closed = closed;
      s.destroy();
      resolve(result);
    };
    s.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (step === 0 && got.length >= 2) {
        got = got.subarray(2);
        step = 1;
        s.write(Buffer.concat([Buffer.from([1, k.length]), k, Buffer.from([k.length]), k]));
      }
      if (step === 1 && got.length >= 2) {
        result.auth = got[1]!;
        got = got.subarray(2);
        step = 2;
        if (result.auth !== 0) return; // the server closes; 'end' reports it
        if (opts.connectPort === undefined) return finish(false);
        const p = opts.connectPort;
        s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, p >> 8, p & 0xff]));
      }
      if (step === 2 && got.length >= 2) {
        result.reply = got[1]!;
        finish(false);
      }
    });
    s.on('end', () => finish(true));
    s.write(Buffer.from([5, 1, 2]));
  });
}
