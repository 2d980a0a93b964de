// The proxy user name parser: the key as the password, `-name-value` pairs after it in the user name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  NO_PARAMS,
  parseProxyUser,
  PROXY_USER_REFUSAL_DETAILS,
  type ProxyUserDecision,
  type ProxyUserParams,
} from '../src/protocol/proxy-user.js';
import { int, pick, rng } from './helpers/random.js';

const KEY = 'k3yZ7qL0pW9xR2vN';
const b = (s: string) => Buffer.from(s, 'latin1');
const parse = (user: string | Buffer, password: string | Buffer = KEY) =>
  parseProxyUser(typeof user === 'string' ? b(user) : user, typeof password === 'string' ? b(password) : password);
const params = (p: Partial<ProxyUserParams>): ProxyUserParams => ({ ...NO_PARAMS, ...p });

function okParams(decision: ProxyUserDecision): ProxyUserParams {
  assert.equal(decision.ok, true, decision.ok ? '' : decision.detail);
  return (decision as Extract<ProxyUserDecision, { ok: true }>).params;
}

function assertRefused(decision: ProxyUserDecision, reason: 'auth' | 'user-parameter', detailMatch?: RegExp, secret?: string): void {
  assert.equal(decision.ok, false);
  if (decision.ok) return;
  assert.equal(decision.reason, reason);
  assert.ok(PROXY_USER_REFUSAL_DETAILS.includes(decision.detail), decision.detail);
  if (detailMatch !== undefined) assert.match(decision.detail, detailMatch);
  if (secret !== undefined) assert.ok(!decision.detail.includes(secret), `detail repeats ${JSON.stringify(secret)}: ${decision.detail}`);
}

test('a user name equal to the password is the key with no parameters; the key is the password buffer itself', () => {
  const password = b(KEY);
  const decision = parseProxyUser(b(KEY), password);
  assert.equal(decision.ok, true);
  if (!decision.ok) return;
  assert.equal(decision.key, password);
  assert.equal(decision.params, NO_PARAMS);
  assert.deepEqual(decision.params, { session: undefined, sessionIdleMinutes: undefined, country: undefined, device: undefined, strict: false });
  assert.ok(Object.isFrozen(NO_PARAMS));
});

test("the issue's examples: session, sesstime, country (lower-cased), device by name or id, strict-1", () => {
  assert.deepEqual(okParams(parse(`${KEY}-session-ab12cd-sesstime-30-country-de`)), params({ session: 'ab12cd', sessionIdleMinutes: 30, country: 'de' }));
  assert.deepEqual(okParams(parse(`${KEY}-country-DE`)), params({ country: 'de' }));
  assert.deepEqual(okParams(parse(`${KEY}-country-dE`)), params({ country: 'de' }));
  assert.deepEqual(okParams(parse(`${KEY}-device-pixel_7.home`)), params({ device: 'pixel_7.home' }));
  assert.deepEqual(okParams(parse(`${KEY}-device-42`)), params({ device: '42' }));
  assert.deepEqual(okParams(parse(`${KEY}-session-x-strict-1`)), params({ session: 'x', strict: true }));
  assert.deepEqual(okParams(parse(`${KEY}-strict-1-session-x`)), params({ session: 'x', strict: true }));
  assert.deepEqual(okParams(parse(`${KEY}-session-S_1`)), params({ session: 'S_1' }));
  assert.deepEqual(
    okParams(parse(`${KEY}-device-d1-country-fr-strict-1-sesstime-1440-session-s`)),
    params({ session: 's', sessionIdleMinutes: 1440, country: 'fr', device: 'd1', strict: true }),
  );
  const decision = parse(`${KEY}-session-a`);
  assert.ok(decision.ok && decision.key.equals(b(KEY)));
});

test('keys containing - : the password says where the key ends', () => {
  assert.deepEqual(okParams(parse('ab-cd-ef-session-x1', 'ab-cd-ef')), params({ session: 'x1' }));
  assert.equal(okParams(parse('ab-cd-ef', 'ab-cd-ef')), NO_PARAMS);
  // A key that looks like parameters is still just a key when the user name equals it.
  assert.equal(okParams(parse('k-session-x', 'k-session-x')), NO_PARAMS);
  assert.deepEqual(okParams(parse('k-session-x-session-y', 'k-session-x')), params({ session: 'y' }));
  // A key ending in '-' still takes its own separator.
  assert.equal(okParams(parse('k-', 'k-')), NO_PARAMS);
  assert.deepEqual(okParams(parse('k--session-x', 'k-')), params({ session: 'x' }));
  assert.deepEqual(okParams(parse('-', '-')), NO_PARAMS);
  assert.deepEqual(okParams(parse('--country-it', '-')), params({ country: 'it' }));
  // The password is a shorter key: the rest is read as pairs and refused, without repeating any of it.
  assertRefused(parse('ab-cd-ef', 'ab-cd'), 'user-parameter', /unknown parameter name/, 'ef');
  assertRefused(parse('ab-cd-ef', 'ab'), 'user-parameter', /unknown parameter name/, 'cd');
  // The password is longer than the key in the user name: not these credentials.
  assertRefused(parse('ab-cd-ef', 'ab-cd-ef-x'), 'auth');
  assertRefused(parse('ab-cd-ef-session-x', 'ab-cd-eg'), 'auth');
});

test('bad credentials all get the same refusal, whatever is wrong', () => {
  const cases: [string | Buffer, string | Buffer][] = [
    [KEY, ''],
    ['', ''],
    ['', KEY],
    [KEY, `${KEY.slice(0, -1)}X`],
    [KEY.slice(0, -1), KEY],
    [`${KEY}x`, KEY],
    [`${KEY}_session-x`, KEY],
    [`X${KEY.slice(1)}-session-x`, KEY],
    [`${KEY.slice(0, -1)}-session-x`, KEY],
    [`session-x-${KEY}`, KEY],
    [KEY.toUpperCase(), KEY],
    // Not UTF-8: cannot be a registered key, with or without parameters.
    [Buffer.from([0xff, 0x41]), Buffer.from([0xff, 0x41])],
    [Buffer.concat([Buffer.from([0xc3, 0x28]), b('-session-x')]), Buffer.from([0xc3, 0x28])],
  ];
  const first = parse(...cases[0]!);
  for (const [user, password] of cases) {
    const decision = parse(user, password);
    assertRefused(decision, 'auth');
    assert.equal(decision, first, `${String(user)} / ${String(password)}`);
  }
  // A UTF-8 key beyond ASCII is not refused here (the key rules are the registration's business).
  assert.equal(okParams(parse(Buffer.from('ключ-session-x'), Buffer.from('ключ'))).session, 'x');
});

test('malformed parameters after a correct key prefix: user-parameter, naming the parameter, never the key', () => {
  const refused: [string, RegExp][] = [
    ['-', /trailing '-'/],
    ['-session-x-', /trailing '-'/],
    ['-session-x--', /trailing '-'/],
    ['--session-x', /empty parameter name/],
    ['-session-x--country-de', /empty parameter name/],
    ['-session', /'session': no value/],
    ['-session-x-country', /'country': no value/],
    ['-session--country-de', /'session': no value/],
    ['-sesstime--session-x', /'sesstime': no value/],
    ['-foo-bar', /unknown parameter name \(known: session, sesstime, country, device, strict\)/],
    ['-Session-x', /unknown parameter name/],
    ['-COUNTRY-de', /unknown parameter name/],
    ['-session-x-zone-eu', /unknown parameter name/],
    ['-session-a-session-b', /'session': given more than once/],
    ['-country-de-country-fr', /'country': given more than once/],
    ['-session-s-sesstime-5-sesstime-5', /'sesstime': given more than once/],
    ['-device-a-device-a', /'device': given more than once/],
    ['-session-s-strict-1-strict-1', /'strict': given more than once/],
    ['-sesstime-30', /'sesstime': only valid with 'session'/],
    ['-strict-1', /'strict': only valid with 'session'/],
    ['-country-de-strict-1-device-d', /'strict': only valid with 'session'/],
    ['-session-a.b', /'session': must be 1-64/],
    ['-session-\u00e9', /'session': must be 1-64/],
    [`-session-${'s'.repeat(65)}`, /'session': must be 1-64/],
    ['-session-s-sesstime-0', /'sesstime': must be whole minutes 1-1440/],
    ['-session-s-sesstime-1441', /'sesstime': must be whole minutes/],
    ['-session-s-sesstime-9999', /'sesstime': must be whole minutes/],
    ['-session-s-sesstime-10000', /'sesstime': must be whole minutes/],
    ['-session-s-sesstime-030', /'sesstime': must be whole minutes.*without leading zeros/],
    ['-session-s-sesstime-1.5', /'sesstime': must be whole minutes/],
    ['-session-s-sesstime-+5', /'sesstime': must be whole minutes/],
    ['-session-s-sesstime-5m', /'sesstime': must be whole minutes/],
    ['-session-s-sesstime- 5', /'sesstime': must be whole minutes/],
    ['-country-deu', /'country': must be 2 letters/],
    ['-country-d', /'country': must be 2 letters/],
    ['-country-d1', /'country': must be 2 letters/],
    ['-country-@[', /'country': must be 2 letters/],
    ['-device-a b', /'device': must be a device name or id/],
    ['-device-a:b', /'device': must be a device name or id.*chosen by its id/],
    [`-device-${'d'.repeat(65)}`, /'device': must be a device name or id/],
    // A device name with '-' splits into a name and an unknown "parameter".
    ['-device-my-phone', /unknown parameter name/],
    ['-session-s-strict-0', /'strict': the only value is 1/],
    ['-session-s-strict-true', /'strict': the only value is 1/],
    ['-session-s-strict-11', /'strict': the only value is 1/],
  ];
  for (const [tail, detail] of refused) {
    const decision = parse(KEY + tail);
    assertRefused(decision, 'user-parameter', detail, KEY);
    if (!decision.ok) assert.ok(!decision.detail.includes('Z7q'), tail);
  }
  // Bytes that are not UTF-8 after the key are refused as parameters, never passed on.
  for (const tail of [[0xff], [0x2d, 0xff], [0x80, 0x2d, 0x31]]) {
    assertRefused(parse(Buffer.concat([b(`${KEY}-session-`), Buffer.from(tail)])), 'user-parameter');
  }
  assertRefused(parse(Buffer.concat([b(`${KEY}-`), Buffer.from([0xc3, 0xa9]), b('-x')])), 'user-parameter', /unknown parameter name/);
  assertRefused(parse(Buffer.concat([b(`${KEY}-country-`), Buffer.from([0xc4, 0xe4])])), 'user-parameter', /'country'/);
});

test('values at their limits', () => {
  const s64 = 'aZ09_'.repeat(13).slice(0, 64);
  const d64 = 'aZ09_.'.repeat(11).slice(0, 64);
  assert.equal(s64.length, 64);
  assert.equal(okParams(parse(`${KEY}-session-${s64}`)).session, s64);
  assert.equal(okParams(parse(`${KEY}-session-_`)).session, '_');
  assert.equal(okParams(parse(`${KEY}-device-${d64}`)).device, d64);
  assert.equal(okParams(parse(`${KEY}-device-.`)).device, '.');
  assert.equal(okParams(parse(`${KEY}-session-s-sesstime-1`)).sessionIdleMinutes, 1);
  assert.equal(okParams(parse(`${KEY}-session-s-sesstime-9`)).sessionIdleMinutes, 9);
  assert.equal(okParams(parse(`${KEY}-session-s-sesstime-1440`)).sessionIdleMinutes, 1440);
  assert.equal(okParams(parse(`${KEY}-country-AZ`)).country, 'az');
  assert.equal(okParams(parse(`${KEY}-country-za`)).country, 'za');
});

test('SOCKS5 budget: every parameter at its longest takes 179 bytes, so a 76-byte key still fits RFC 1929', () => {
  const tail = `-session-${'s'.repeat(64)}-sesstime-1440-country-de-device-${'d'.repeat(64)}-strict-1`;
  assert.equal(tail.length, 179);
  const key = 'K'.repeat(255 - tail.length);
  assert.equal(key.length, 76);
  assert.equal(b(key + tail).length, 255);
  assert.deepEqual(okParams(parse(key + tail, key)), params({ session: 's'.repeat(64), sessionIdleMinutes: 1440, country: 'de', device: 'd'.repeat(64), strict: true }));
});

// Registration keys: printable ASCII without spaces or ':' (api/errors.ts). Half of them with '-', some at its ends.
const KEY_CHARS = Array.from({ length: 0x7f - 0x21 }, (_, i) => String.fromCharCode(0x21 + i)).filter((c) => c !== ':');
const WORD = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_';

function randomKey(r: () => number): string {
  let key = Array.from({ length: 1 + int(r, 48) }, () => pick(r, KEY_CHARS)).join('');
  if (r() < 0.5) key = key.replace(/-/g, '');
  if (key === '') key = 'k';
  if (r() < 0.5) {
    const parts = Array.from({ length: 1 + int(r, 4) }, () => key.slice(0, 1 + int(r, key.length)));
    key = parts.join('-');
  }
  if (r() < 0.1) key = `${key}-`;
  if (r() < 0.1) key = `-${key}`;
  return key;
}

const word = (r: () => number, alphabet: string, max: number) => Array.from({ length: 1 + int(r, max) }, () => pick(r, [...alphabet])).join('');

function randomParams(r: () => number): { params: ProxyUserParams; pairs: string[] } {
  const pairs: string[] = [];
  let p: ProxyUserParams = NO_PARAMS;
  if (r() < 0.6) {
    const session = word(r, WORD, 64);
    p = { ...p, session };
    pairs.push(`session-${session}`);
    if (r() < 0.5) {
      const minutes = r() < 0.2 ? pick(r, [1, 1440]) : 1 + int(r, 1440);
      p = { ...p, sessionIdleMinutes: minutes };
      pairs.push(`sesstime-${minutes}`);
    }
    if (r() < 0.4) {
      p = { ...p, strict: true };
      pairs.push('strict-1');
    }
  }
  if (r() < 0.5) {
    const cc = word(r, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', 1) + word(r, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', 1);
    p = { ...p, country: cc.toLowerCase() };
    pairs.push(`country-${cc}`);
  }
  if (r() < 0.5) {
    const device = word(r, `${WORD}.`, 64);
    p = { ...p, device };
    pairs.push(`device-${device}`);
  }
  // Random order.
  for (let i = pairs.length - 1; i > 0; i--) {
    const j = int(r, i + 1);
    [pairs[i], pairs[j]] = [pairs[j]!, pairs[i]!];
  }
  return { params: p, pairs };
}

const render = (key: string, pairs: string[]) => (pairs.length === 0 ? key : `${key}-${pairs.join('-')}`);

test('property: random keys and random parameter sets in random order parse back to the same parameters', () => {
  const seed = Date.now() >>> 0;
  const r = rng(seed);
  for (let i = 0; i < 20_000; i++) {
    const key = randomKey(r);
    const { params: expected, pairs } = randomParams(r);
    const user = render(key, pairs);
    const password = b(key);
    const decision = parseProxyUser(b(user), password);
    assert.ok(decision.ok, `seed ${seed}, ${JSON.stringify(user)} / ${JSON.stringify(key)}: ${decision.ok ? '' : decision.detail}`);
    assert.equal(decision.key, password);
    assert.deepEqual(decision.params, expected, `seed ${seed}, ${JSON.stringify(user)}`);
  }
});

const MUTATION_BYTES = [0x2d, 0x2d, 0x31, 0x30, 0x00, 0xff, 0x80, 0xc3, 0x20, 0x3a, 0x2e, 0x5f, 0x41, 0x7a];

function mutate(r: () => number, input: Buffer): Buffer {
  const bytes = [...input];
  const randomByte = () => (r() < 0.6 ? pick(r, MUTATION_BYTES) : int(r, 256));
  for (let n = 1 + int(r, 3); n > 0; n--) {
    const at = int(r, bytes.length + 1);
    switch (int(r, 6)) {
      case 0: bytes.splice(at, 0, randomByte()); break;
      case 1: bytes.splice(at, 1); break;
      case 2: if (at < bytes.length) bytes[at] = randomByte(); break;
      case 3: bytes.length = at; break;
      case 4: bytes.splice(at, 0, ...b(pick(r, ['-session-x', '-country-de', '-strict-1', '-sesstime-5', '-device-', '-', 'session']))); break;
      case 5: bytes.splice(at, int(r, 8), ...bytes.slice(int(r, bytes.length), int(r, bytes.length))); break;
    }
  }
  return Buffer.from(bytes);
}

test('fuzz: mutated user names and passwords never throw and never yield a key other than the password', () => {
  const seed = (Date.now() ^ 0x5eed) >>> 0;
  const r = rng(seed);
  const seen = { ok: 0, auth: 0, 'user-parameter': 0 };
  for (let i = 0; i < 20_000; i++) {
    const key = randomKey(r);
    const user0 = b(render(key, randomParams(r).pairs));
    const user = r() < 0.9 ? mutate(r, user0) : user0;
    const password = r() < 0.2 ? mutate(r, b(key)) : b(key);
    let decision: ProxyUserDecision;
    try {
      decision = parseProxyUser(user, password);
    } catch (err) {
      assert.fail(`seed ${seed}: threw on ${user.toString('hex')} / ${password.toString('hex')}: ${String(err)}`);
    }
    const where = `seed ${seed}, ${user.toString('hex')} / ${password.toString('hex')}`;
    if (decision.ok) {
      seen.ok++;
      assert.equal(decision.key, password, where);
      assert.ok(password.length > 0 && user.subarray(0, password.length).equals(password), where);
      assert.ok(user.length === password.length || user[password.length] === 0x2d, where);
      // Whatever was accepted renders back (canonically) to a user name that parses to the same parameters.
      const p = decision.params;
      const pairs: string[] = [];
      if (p.session !== undefined) pairs.push(`session-${p.session}`);
      if (p.sessionIdleMinutes !== undefined) pairs.push(`sesstime-${p.sessionIdleMinutes}`);
      if (p.country !== undefined) pairs.push(`country-${p.country}`);
      if (p.device !== undefined) pairs.push(`device-${p.device}`);
      if (p.strict) pairs.push('strict-1');
      const again = parseProxyUser(Buffer.concat([password, b(pairs.length === 0 ? '' : `-${pairs.join('-')}`)]), password);
      assert.deepEqual(again.ok && again.params, pairs.length === 0 ? NO_PARAMS : p, where);
    } else {
      seen[decision.reason]++;
      assert.ok(PROXY_USER_REFUSAL_DETAILS.includes(decision.detail), where);
    }
  }
  // The mutations reach every outcome.
  for (const [outcome, count] of Object.entries(seen)) assert.ok(count > 500, `seed ${seed}: ${outcome} only ${count} times`);
});

test('the refusal details are a short fixed list, each naming at most one known parameter', () => {
  assert.equal(new Set(PROXY_USER_REFUSAL_DETAILS).size, PROXY_USER_REFUSAL_DETAILS.length);
  assert.ok(PROXY_USER_REFUSAL_DETAILS.length <= 30);
  for (const detail of PROXY_USER_REFUSAL_DETAILS) {
    assert.match(detail, /^(bad credentials|user name parameters: .+|user name parameter '(session|sesstime|country|device|strict)': .+)$/);
  }
});
