// tailscaled's LocalAPI on the wire: the Host it insists on, and the `ts-dial` upgrade that turns a LocalAPI
// connection into a connection to a tailnet address (POST /localapi/v0/dial, answered with 101 and then raw bytes).
import { DialError, type FailureReason } from '../core/failure.js';
import type { HandshakeFailure, HandshakeMachine, HandshakeStep } from './handshake.js';
import { parseResponseHead } from './http.js';

/** tailscaled answers 403 to a LocalAPI request with any other Host (its DNS-rebinding guard). */
export const LOCALAPI_HOST = 'local-tailscaled.sock';

// The host goes into a header line: only what an address or a plain name needs, nothing that could end the line.
const HEADER_SAFE_HOST = /^[A-Za-z0-9.:-]+$/;
const CONTENT_LENGTH = /\r\ncontent-length:\s*(\d+)/i;
const DIAL_SELF = /\r\ndial-self:\s*true/i;

/** tailscaled answers a failed dial with 502 and Go's error text; the text is all there is to tell causes apart. */
function reasonFromDialFailure(text: string): FailureReason {
  const t = text.toLowerCase();
  if (t.includes('refused')) return 'refused';
  if (t.includes('timeout') || t.includes('timed out') || t.includes('deadline exceeded')) return 'timeout';
  if (t.includes('no route') || t.includes('unreachable') || t.includes('no such host') || t.includes('resolve failure')) return 'unreachable';
  // Anything else is not known to mean "no route": say so plainly rather than guess (the log line has the text).
  return 'error';
}

const NEED_MORE: HandshakeStep = Object.freeze({ kind: 'need-more' });

/** One `ts-dial` upgrade: done at the 101 reply head, after which the connection carries the device's bytes. */
export class TsDialHandshake implements HandshakeMachine {
  readonly hello: Buffer;

  constructor(host: string, port: number) {
    if (!HEADER_SAFE_HOST.test(host)) throw new DialError('error', 'device host contains characters that cannot go in a header');
    this.hello = Buffer.from(
      `POST /localapi/v0/dial HTTP/1.1\r\nHost: ${LOCALAPI_HOST}\r\nConnection: upgrade\r\nUpgrade: ts-dial\r\n` +
        `Dial-Host: ${host}\r\nDial-Port: ${port}\r\nDial-Network: tcp\r\nContent-Length: 0\r\n\r\n`,
      'latin1',
    );
  }

  feed(received: Buffer): HandshakeStep {
    const head = parseResponseHead(received);
    if (head.kind === 'need-more') return NEED_MORE;
    if (head.kind === 'invalid') return { kind: 'fail', reason: 'protocol', message: head.message };
    if (head.status === 101) return { kind: 'done', consumed: head.headLength };
    const failure = refusal(received, head.status, head.headLength, false);
    return failure === null ? NEED_MORE : { kind: 'fail', ...failure };
  }

  closed(received: Buffer): HandshakeFailure {
    const head = parseResponseHead(received);
    if (head.kind !== 'reply') return { reason: 'protocol', message: 'LocalAPI closed mid-reply' };
    return refusal(received, head.status, head.headLength, true)!;
  }
}

/** Why a reply other than 101 refused the dial; null while its body is still arriving. */
function refusal(buf: Buffer, status: number, headLength: number, ended: boolean): HandshakeFailure | null {
  const head = buf.toString('latin1', 0, headLength - 4);
  const lengthMatch = CONTENT_LENGTH.exec(head);
  const bodyLength = lengthMatch ? Number(lengthMatch[1]) : -1;
  const body = buf.subarray(headLength);
  if (!ended && (bodyLength < 0 || body.length < bodyLength)) return null;
  const text = body.toString('utf8', 0, bodyLength < 0 ? body.length : bodyLength).trim().slice(0, 160);
  // 200 + Dial-Self means "not a tailnet address, dial it yourself": a binding that points outside the tailnet.
  if (status === 200 && DIAL_SELF.test(head)) return { reason: 'unreachable', message: 'not a tailnet address' };
  if (status === 502) return { reason: reasonFromDialFailure(text), message: `could not connect: ${text}` };
  return { reason: 'error', message: `LocalAPI answered HTTP ${status}: ${text}` };
}
