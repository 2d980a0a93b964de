// The LocalAPI `ts-dial` upgrade as a pure machine: what tailscaled's answers mean before the connection is handed on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DialError } from '../src/core/failure.js';
import { TsDialHandshake } from '../src/protocol/localapi.js';

const reply = (status: string, headers: string, body = '') => Buffer.from(`HTTP/1.1 ${status}\r\n${headers}\r\n${body}`);

test('the dial request names the LocalAPI host and the device; a host that could end a header line is refused', () => {
  assert.equal(
    new TsDialHandshake('fd7a:115c:a1e0::7', 8939).hello.toString('latin1'),
    'POST /localapi/v0/dial HTTP/1.1\r\nHost: local-tailscaled.sock\r\nConnection: upgrade\r\nUpgrade: ts-dial\r\n' +
      'Dial-Host: fd7a:115c:a1e0::7\r\nDial-Port: 8939\r\nDial-Network: tcp\r\nContent-Length: 0\r\n\r\n',
  );
  assert.throws(() => new TsDialHandshake('100.64.0.7\r\nX-Evil: 1', 80), (err: unknown) => err instanceof DialError && err.reason === 'error');
});

test('101 completes the upgrade; the device bytes behind it are left for the stream', () => {
  const m = new TsDialHandshake('100.64.0.7', 8939);
  const head = 'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ts-dial\r\n\r\n';
  assert.deepEqual(m.feed(Buffer.from(head.slice(0, 40))), { kind: 'need-more' });
  assert.deepEqual(m.feed(Buffer.from(`${head}HTTP/1.1 200 Connection established`)), { kind: 'done', consumed: head.length });
});

test("a refused dial is read from Go's error text, once the body is complete or the connection ends", () => {
  const m = new TsDialHandshake('100.64.0.7', 9);
  const text = 'dial tcp 100.64.0.7:9: connect: connection refused';
  const full = reply('502 Bad Gateway', `Content-Length: ${text.length + 1}\r\n`, `${text}\n`);
  assert.deepEqual(m.feed(full.subarray(0, full.length - 1)), { kind: 'need-more' });
  assert.deepEqual(m.feed(full), { kind: 'fail', reason: 'refused', message: `could not connect: ${text}` });
  assert.equal(m.closed(full.subarray(0, full.length - 1)).reason, 'refused');

  const noLength = reply('502 Bad Gateway', '', 'context deadline exceeded');
  assert.deepEqual(m.feed(noLength), { kind: 'need-more' }, 'without a length the body ends with the connection');
  assert.deepEqual(m.closed(noLength), { reason: 'timeout', message: 'could not connect: context deadline exceeded' });
  assert.equal(m.closed(reply('502 Bad Gateway', '', 'dial tcp: no route to host')).reason, 'unreachable');
  assert.equal(m.closed(reply('502 Bad Gateway', '', 'something else entirely')).reason, 'error');
});

test('other answers: not a tailnet address, LocalAPI errors, something that is not HTTP', () => {
  const m = new TsDialHandshake('192.168.1.1', 80);
  assert.deepEqual(m.feed(reply('200 OK', 'Dial-Self: true\r\nContent-Length: 0\r\n')), { kind: 'fail', reason: 'unreachable', message: 'not a tailnet address' });
  assert.deepEqual(m.feed(reply('403 Forbidden', 'Content-Length: 9\r\n', 'forbidden')), { kind: 'fail', reason: 'error', message: 'LocalAPI answered HTTP 403: forbidden' });
  assert.equal((m.feed(Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')) as { reason: string }).reason, 'protocol');
  assert.deepEqual(m.closed(Buffer.from('HTTP/1.1 101 Switch')), { reason: 'protocol', message: 'LocalAPI closed mid-reply' });
});
