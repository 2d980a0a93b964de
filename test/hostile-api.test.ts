// Hostile input to the management API on PostgreSQL: device addresses outside TAILGATE_ALLOW_CIDRS in every
// spelling a resolver or inet_aton would read as an address, bodies over the size limit, and deeply nested JSON.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { openStore } from '../src/store/index.js';
import type { NodeStore, RegistryStore } from '../src/store/types.js';
import { MAX_JSON_DEPTH } from '../src/api/json-depth.js';
import { assertError, callApi, DocumentChecker, startApi, type Answer, type Api, type CallOptions } from './helpers/api.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

const ADMIN = 'admin-token-hostile-0123456789';
const log = pino({ level: 'silent' }, new Writable({ write: (_c, _e, done) => done() }));
const checker = new DocumentChecker();

let db: TestDatabase;
let store: NodeStore & RegistryStore;
let api: Api;
let port: number;

before(async () => {
  db = await createTestDatabase('hostile_api');
  store = await openStore({ database: db.target, dataDir: '/unused', log });
  api = await startApi({ TAILGATE_ADMIN_TOKEN: ADMIN }, store, log);
  port = Number(new URL(api.base).port);
  const document = await callApi(api, checker, ADMIN, 'GET', '/openapi.json');
  checker.load(document.json);
});

after(async () => {
  await api?.app.close();
  await (store as { close?: () => Promise<void> })?.close?.();
  await db?.drop();
});

const call = (method: string, path: string, opts: CallOptions = {}): Promise<Answer> => callApi(api, checker, ADMIN, method, path, opts);

let counter = 0;
const newKey = () => `hostile-${process.pid}-${++counter}`.padEnd(24, 'Q');

async function nodeCount(): Promise<number> {
  const nodes = await call('GET', '/nodes');
  assert.equal(nodes.status, 200, nodes.text);
  return (nodes.json as unknown[]).length;
}

// ---- registration address spellings ---------------------------------------------------------------------

/** Spellings that are not one IP literal: refused as such, whatever they might mean to inet_aton or a resolver. */
const NOT_AN_ADDRESS = [
  '2130706433', // 127.0.0.1 as one decimal number
  '0177.0.0.1', // octal
  '0x7f.0.0.1', // hex
  '0x7f000001',
  '127.1', // short form
  '127.0.1',
  '100.064.0.7', // a leading zero (octal to inet_aton: 100.52.0.7)
  '100.64.0.07',
  '017700000001',
  'fe80::1%eth0', // zone ids
  'fd7a:115c:a1e0::1%1',
  '::ffff:100.64.0.7%eth0',
  ' 100.64.0.7', // whitespace
  '100.64.0.7 ',
  '100.64.0.7\n',
  '\t100.64.0.7',
  '100.64.0.7.', // trailing dot
  'fd7a:115c:a1e0::1.',
  '[fd7a:115c:a1e0::1]', // brackets
  '100.64.0.7:8939',
  'localhost',
  '100.64.0.7/32',
];

/** IP literals, outside the default ranges, in the other spellings an address has. */
const OUTSIDE: [string, string][] = [
  ['::ffff:127.0.0.1', '127.0.0.1'], // IPv4-mapped, dotted
  ['::ffff:7f00:1', '127.0.0.1'], // IPv4-mapped, hex
  ['::FFFF:7F00:0001', '127.0.0.1'],
  ['0:0:0:0:0:ffff:7f00:1', '127.0.0.1'],
  ['::ffff:10.0.0.1', '10.0.0.1'],
  ['::ffff:169.254.169.254', '169.254.169.254'], // a cloud metadata service
  ['::127.0.0.1', '::7f00:1'], // IPv4-compatible (deprecated), an IPv6 address of its own
  ['::6440:7', '::6440:7'],
  ['64:ff9b::7f00:1', '64:ff9b::7f00:1'], // NAT64
  ['::ffff:0:6440:7', '::ffff:0:6440:7'], // IPv4-translated (RFC 2765), not mapped
  ['::1', '::1'],
  ['0:0:0:0:0:0:0:1', '::1'],
  ['FE80::1', 'fe80::1'],
  ['127.0.0.1', '127.0.0.1'],
  ['0.0.0.0', '0.0.0.0'],
  ['100.128.0.1', '100.128.0.1'], // just past 100.64.0.0/10
  ['fd7a:115c:a1e1::1', 'fd7a:115c:a1e1::1'], // just past fd7a:115c:a1e0::/48
];

test('registration: an address in any non-literal spelling is refused with 400 invalid_ip, nothing stored', async () => {
  const before = await nodeCount();
  for (const ip of NOT_AN_ADDRESS) {
    const a = await call('POST', '/register', { body: { key: newKey(), ip } });
    assertError(a, 400, 'invalid_ip', /^ip: ".*" is not an IP address$/);
    assert.equal(a.json.message, `ip: ${JSON.stringify(ip)} is not an IP address`, `for ${JSON.stringify(ip)}`);
  }
  assert.equal(await nodeCount(), before);
});

test('registration: an address outside the allow-list is refused in every spelling, checked as the address it is', async () => {
  const before = await nodeCount();
  for (const [ip, canonical] of OUTSIDE) {
    const a = await call('POST', '/register', { body: { key: newKey(), ip } });
    assertError(a, 400, 'ip_not_allowed', /is outside the allowed device ranges \(100\.64\.0\.0\/10,fd7a:115c:a1e0::\/48, TAILGATE_ALLOW_CIDRS\)$/);
    const written = canonical === ip ? '' : ` (written ${JSON.stringify(ip)})`;
    assert.ok((a.json.message as string).startsWith(`ip: ${canonical}${written} is outside`), `for ${ip}: ${a.json.message}`);
  }
  assert.equal(await nodeCount(), before);
});

test('registration: an allowed address in another spelling is stored in its one spelling (the same device)', async () => {
  const k = newKey();
  const mapped = await call('POST', '/register', { body: { key: k, ip: '::ffff:100.64.0.7' } });
  assert.equal(mapped.status, 201, mapped.text);
  assert.equal(mapped.json.ip, '100.64.0.7');
  const again = await call('POST', '/register', { body: { key: k, ip: '::FFFF:6440:7' } });
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.node.id, mapped.json.node.id);
  assert.equal(again.json.ip, '100.64.0.7');
  const v6 = await call('POST', '/register', { body: { key: newKey(), ip: 'FD7A:115C:A1E0:0000:0000:0000:0000:0001' } });
  assert.equal(v6.status, 201, v6.text);
  assert.equal(v6.json.ip, 'fd7a:115c:a1e0::1');
});

// ---- body limits ------------------------------------------------------------------------------------------

interface RawAnswer {
  status: number;
  headers: string;
  body: string;
  ms: number;
}

/**
 * One request on a raw socket: the head, then `body` in 64 KiB writes (chunked framing when `chunked`). The server may
 * answer and close before the body is all sent; what it answered is what counts.
 */
function rawRequest(path: string, body: Buffer, chunked: boolean): Promise<RawAnswer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within 20 s for ${path}`));
    }, 20_000);
    const finish = () => {
      clearTimeout(timer);
      const text = Buffer.concat(got).toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no complete answer: ${JSON.stringify(text.slice(0, 200))}`));
      resolve({ status: Number(text.slice(9, 12)), headers: text.slice(0, end), body: text.slice(end + 4), ms: performance.now() - started });
    };
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => s.destroy());
    s.on('close', finish);
    s.on('connect', () => {
      const framing = chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${body.length}`;
      s.write(`POST ${path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\n${framing}\r\nConnection: close\r\n\r\n`);
      for (let at = 0; at < body.length && !s.destroyed; at += 65_536) {
        const part = body.subarray(at, at + 65_536);
        s.write(chunked ? Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]) : part);
      }
      if (chunked && !s.destroyed) s.write('0\r\n\r\n');
    });
  });
}

function assertApiError(a: RawAnswer, status: number, message: string): void {
  assert.equal(a.status, status, a.body);
  const chunkedBody = /transfer-encoding: chunked/i.test(a.headers);
  const json = JSON.parse(chunkedBody ? a.body.replace(/^[0-9a-f]+\r\n/, '').replace(/\r\n0\r\n\r\n$/, '') : a.body);
  assert.deepEqual(json, { success: false, message, error: 'invalid_request' });
}

const deepArray = (depth: number) => Buffer.from('['.repeat(depth) + ']'.repeat(depth));

test('API: a 1 MiB body gets 413 in the API error shape, announced or streamed', async (t) => {
  const big = Buffer.from(JSON.stringify({ key: newKey(), ip: '100.64.0.9', name: 'x'.repeat(1024 * 1024) }));
  const announced = await rawRequest('/register', big, false);
  assertApiError(announced, 413, 'body: too large');
  const streamed = await rawRequest('/register', big, true);
  assertApiError(streamed, 413, 'body: too large');
  t.diagnostic(`1 MiB: ${announced.ms.toFixed(0)} ms with Content-Length, ${streamed.ms.toFixed(0)} ms chunked`);
});

test('API: a 100,000-deep array is refused without being parsed (413: it is 200 kB, over the 16 KiB limit)', async (t) => {
  const announced = await rawRequest('/register', deepArray(100_000), false);
  assertApiError(announced, 413, 'body: too large');
  const streamed = await rawRequest('/keys', deepArray(100_000), true);
  assertApiError(streamed, 413, 'body: too large');
  t.diagnostic(`100,000 deep: ${announced.ms.toFixed(0)} ms with Content-Length, ${streamed.ms.toFixed(0)} ms chunked`);
});

test(`API: JSON nested deeper than ${MAX_JSON_DEPTH} levels within the size limit gets 400 before it is parsed`, async (t) => {
  const message = `body: nested deeper than ${MAX_JSON_DEPTH} levels`;
  const deepest = await rawRequest('/register', deepArray(8_000), false); // 16,000 bytes: the deepest array that fits
  assertApiError(deepest, 400, message);
  const objects = Buffer.from('{"a":'.repeat(2_500) + '1' + '}'.repeat(2_500));
  assertApiError(await rawRequest('/pools', objects, false), 400, message);
  const inField = Buffer.from(`{"key":"${newKey()}","ip":"100.64.0.9","name":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`);
  assertApiError(await rawRequest('/register', inField, false), 400, message);
  t.diagnostic(`8,000 deep: ${deepest.ms.toFixed(0)} ms`);
  // At the limit it is the schema that answers, and brackets inside strings are not nesting.
  const atLimit = Buffer.from(`{"key":"${newKey()}","ip":"100.64.0.9","name":${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}}`);
  assertApiError(await rawRequest('/register', atLimit, false), 400, 'body.name must be a string');
  const inString = await call('POST', '/register', { body: { key: newKey(), ip: '100.64.0.9', name: `x${'[{'.repeat(60)}` } });
  assert.equal(inString.status, 201, inString.text);
});

test('API: still serving after the hostile bodies', async () => {
  const health = await call('GET', '/healthz', { token: null });
  assert.equal(health.status, 200);
  assert.ok((await nodeCount()) >= 3);
});
