// Clients that keep opening short tunnels through a gateway's HTTP CONNECT and SOCKS5 listeners to a line echo server,
// one after another, and record how each attempt ended: the load a fault is injected under. Raw sockets, so a failure
// is seen exactly as the gateway answered it (status and X-Tailgate-Error, or the SOCKS5 reply code).
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type Via = 'http' | 'socks5';

export type Outcome =
  /** The tunnel came up and the echo came back from the expected device. */
  | { kind: 'ok' }
  /** The gateway refused: HTTP status with its X-Tailgate-Error, or a SOCKS5 reply (or auth) code. */
  | { kind: 'refused'; status: number; reason: string }
  /** The connection ended before any answer, or after the tunnel was up but before the echo (a tunnel cut). */
  | { kind: 'cut'; stage: 'handshake' | 'tunnel'; detail: string }
  /** No answer within the attempt's deadline. */
  | { kind: 'timeout'; stage: 'handshake' | 'tunnel' };

export interface Attempt {
  client: number;
  via: Via;
  start: number;
  end: number;
  outcome: Outcome;
}

export interface LoadTarget {
  via: Via;
  port: number;
  key: string;
  /** The echo server, as host:port (IPv4). */
  host: string;
  echoPort: number;
  /** The device address the echo must report (it prefixes each line with the connection's source). */
  expectFrom: string;
}

/** One attempt: handshake, one line echoed, close. Never rejects. */
export function tunnelAttempt(t: LoadTarget, line: string, deadlineMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: t.port, noDelay: true });
    let buf: Buffer = Buffer.alloc(0);
    /** socks5: 0 method reply, 1 auth reply, 2 request reply; http: 2; then 3 = tunnel up. */
    let stage = t.via === 'socks5' ? 0 : 2;
    let settled = false;
    const finish = (o: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout', stage: stage < 3 ? 'handshake' : 'tunnel' }), deadlineMs);
    const key = Buffer.from(t.key);
    const port = Buffer.from([t.echoPort >> 8, t.echoPort & 0xff]);
    socket.on('connect', () => {
      if (t.via === 'socks5') socket.write(Buffer.from([5, 1, 2]));
      else {
        const auth = Buffer.from(`${t.key}:${t.key}`).toString('base64');
        socket.write(`CONNECT ${t.host}:${t.echoPort} HTTP/1.1\r\nHost: ${t.host}:${t.echoPort}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
      }
    });
    const tunnelUp = (rest: Buffer) => {
      stage = 3;
      buf = rest;
      socket.write(`${line}\n`);
    };
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (t.via === 'socks5' && stage === 0) {
        if (buf.length < 2) return;
        if (buf[1] !== 2) return finish({ kind: 'refused', status: buf[1]!, reason: 'socks5 method' });
        buf = buf.subarray(2);
        stage = 1;
        socket.write(Buffer.concat([Buffer.from([1, key.length]), key, Buffer.from([key.length]), key]));
        return;
      }
      if (t.via === 'socks5' && stage === 1) {
        if (buf.length < 2) return;
        if (buf[1] !== 0) return finish({ kind: 'refused', status: buf[1]!, reason: 'socks5 auth' });
        buf = buf.subarray(2);
        stage = 2;
        socket.write(Buffer.concat([Buffer.from([5, 1, 0, 1, ...t.host.split('.').map(Number)]), port]));
        return;
      }
      if (stage === 2 && t.via === 'socks5') {
        if (buf.length < 5) return;
        const len = buf[3] === 1 ? 10 : buf[3] === 4 ? 22 : 7 + buf[4]!;
        if (buf[1] !== 0) return finish({ kind: 'refused', status: buf[1]!, reason: 'socks5 reply' });
        if (buf.length < len) return;
        return tunnelUp(buf.subarray(len));
      }
      if (stage === 2) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        const status = Number(head.split(' ')[1]);
        if (status !== 200) return finish({ kind: 'refused', status, reason: /^x-tailgate-error:\s*(\S+)/im.exec(head)?.[1] ?? '' });
        return tunnelUp(buf.subarray(end + 4));
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const answer = buf.toString('utf8', 0, nl);
      if (answer === `${t.expectFrom} ${line}`) finish({ kind: 'ok' });
      else finish({ kind: 'cut', stage: 'tunnel', detail: `unexpected echo ${JSON.stringify(answer)}` });
    });
    socket.on('error', (err: NodeJS.ErrnoException) => finish({ kind: 'cut', stage: stage < 3 ? 'handshake' : 'tunnel', detail: err.code ?? err.message }));
    socket.on('close', () => finish({ kind: 'cut', stage: stage < 3 ? 'handshake' : 'tunnel', detail: 'closed' }));
  });
}

/**
 * `targets.length` clients, each looping over its target until stop(). A client whose attempt failed waits
 * `failurePauseMs` before the next, so a gateway refusing at once is not spun against; pause() lets every client
 * finish its attempt and wait (for measurements of an idle gateway).
 */
export class TunnelLoad {
  readonly attempts: Attempt[] = [];
  private running = true;
  private paused = false;
  private idle = 0;
  private readonly loops: Promise<void>[];
  private wake: (() => void)[] = [];

  constructor(
    private readonly targets: LoadTarget[],
    private readonly opts: { deadlineMs: number; failurePauseMs: number; successPauseMs: number },
  ) {
    this.loops = targets.map((t, i) => this.loop(i, t));
  }

  private async loop(client: number, t: LoadTarget): Promise<void> {
    for (let n = 0; this.running; n++) {
      if (this.paused) {
        this.idle++;
        await new Promise<void>((r) => this.wake.push(r));
        this.idle--;
        continue;
      }
      const start = Date.now();
      const outcome = await tunnelAttempt(t, `c${client}-${n}`, this.opts.deadlineMs);
      this.attempts.push({ client, via: t.via, start, end: Date.now(), outcome });
      await sleep(outcome.kind === 'ok' ? this.opts.successPauseMs : this.opts.failurePauseMs);
    }
  }

  /** Resolves once every client is waiting. */
  async pause(): Promise<void> {
    this.paused = true;
    while (this.idle < this.targets.length) await sleep(20);
  }

  resume(): void {
    this.paused = false;
    for (const w of this.wake.splice(0)) w();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.resume();
    await Promise.all(this.loops);
  }

  /** Attempts that started in [from, to). */
  between(from: number, to: number): Attempt[] {
    return this.attempts.filter((a) => a.start >= from && a.start < to);
  }
}
