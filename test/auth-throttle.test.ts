// The throttle's own logic on a manual clock: which unit an address counts under, the sliding limit, one cool-down
// (and one notice) per burst, and the bound on the addresses it remembers. Through the gateway: auth-throttle.e2e.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';
import { AuthThrottle, throttleUnit } from '../src/tunnel/auth-throttle.js';

function manualClock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

test('units: IPv4 by address, IPv4-mapped IPv6 as IPv4, IPv6 by /64 whatever its spelling', () => {
  assert.equal(throttleUnit('203.0.113.7'), '203.0.113.7');
  assert.equal(throttleUnit('::ffff:203.0.113.7'), '203.0.113.7');
  const unit = '2001:db8:a:b::/64';
  for (const spelling of ['2001:db8:a:b::1', '2001:db8:a:b:ffff:ffff:ffff:ffff', '2001:0db8:000a:000b:0:0:0:9', '2001:db8:a:b::1%eth0', '2001:db8:a:b:1::']) {
    assert.equal(throttleUnit(spelling), unit, spelling);
  }
  assert.notEqual(throttleUnit('2001:db8:a:c::1'), unit, 'the next /64 is another unit');
  assert.equal(throttleUnit('::1'), '0:0:0:0::/64');
  assert.equal(throttleUnit('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(throttleUnit('fe80::1:2:3:4'), 'fe80:0:0:0::/64');
  assert.equal(throttleUnit('2001:db8:1::10.0.0.1'), '2001:db8:1:0::/64', 'an embedded dotted IPv4 tail');
});

test('the failure that reaches the limit starts the cool-down; the refusal carries Retry-After; it ends on time', () => {
  const clock = manualClock();
  const notices: string[] = [];
  const t = new AuthThrottle({ failuresPerMinute: 20, cooldownMs: 30_000, clock, onThrottle: (a) => notices.push(a) });
  for (let i = 0; i < 19; i++) {
    assert.equal(t.refusal('a'), null);
    t.failed('a');
  }
  assert.equal(t.refusal('a'), null, '19 failures: the 20th attempt is still checked');
  t.failed('a');
  const r = t.refusal('a');
  assert.deepEqual(r, {
    reason: 'auth_rate_limited',
    proxyStatus: 'http_request_denied',
    details: 'auth_rate_limited',
    retryAfterS: 30,
    text: 'too many failed authentication attempts from this address; try again later',
  });
  assert.deepEqual(notices, ['a']);
  assert.equal(t.refusal('b'), null, 'another unit is unaffected');
  clock.advance(29_500);
  assert.equal(t.refusal('a')?.retryAfterS, 1);
  clock.advance(500);
  assert.equal(t.refusal('a'), null, 'served again after the cool-down');
  // 30 s refilled 10 failures: the address gets 10 more before the next cool-down, and one more notice.
  for (let i = 0; i < 9; i++) t.failed('a');
  assert.equal(t.refusal('a'), null);
  t.failed('a');
  assert.notEqual(t.refusal('a'), null);
  assert.deepEqual(notices, ['a', 'a']);
});

test('a sliding window: failures spread at the sustained rate never trip it, a burst on top does', () => {
  const clock = manualClock();
  const t = new AuthThrottle({ failuresPerMinute: 20, cooldownMs: 60_000, clock });
  // One failure every 3 s is exactly 20 a minute: for ten minutes, never throttled.
  for (let i = 0; i < 200; i++) {
    t.failed('a');
    assert.equal(t.refusal('a'), null, `failure ${i + 1}`);
    clock.advance(3_000);
  }
  // A full bucket allows 20 at once; the 20th trips it.
  clock.advance(60_000);
  for (let i = 0; i < 19; i++) t.failed('a');
  assert.equal(t.refusal('a'), null);
  t.failed('a');
  assert.notEqual(t.refusal('a'), null);
});

test('successes forgive nothing: a valid key between guesses does not reset the count', () => {
  const clock = manualClock();
  const t = new AuthThrottle({ failuresPerMinute: 5, cooldownMs: 1_000, clock });
  // The pipeline records only failures; a success between them leaves the bucket as it is, so there is no API to call.
  for (let i = 0; i < 4; i++) t.failed('a');
  assert.equal(t.refusal('a'), null);
  t.failed('a');
  assert.notEqual(t.refusal('a'), null);
});

test('memory is bounded: a spray from 100,000 addresses keeps at most maxAddresses entries', () => {
  const clock = manualClock();
  const t = new AuthThrottle({ failuresPerMinute: 20, cooldownMs: 60_000, clock, maxAddresses: 1_000 });
  for (let i = 0; i < 100_000; i++) t.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  assert.equal(t.size, 1_000);
  // The most recent addresses are the ones kept.
  for (let i = 0; i < 20; i++) t.failed('10.1.134.159');
  assert.notEqual(t.refusal('10.1.134.159'), null);
});

test('a limit below 1 is a programming error (0 means no throttle at all, built by app.ts as none)', () => {
  assert.throws(() => new AuthThrottle({ failuresPerMinute: 0, cooldownMs: 1_000 }), RangeError);
});

test('configuration: 20 a minute and a 60 s cool-down by default, 0 turns it off, bad values named', () => {
  assert.deepEqual(loadConfig({}).authThrottle, { failuresPerMinute: 20, cooldownMs: 60_000 });
  assert.equal(loadConfig({ TAILGATE_AUTH_FAILURES_PER_MINUTE: '0' }).authThrottle.failuresPerMinute, 0);
  assert.deepEqual(loadConfig({ TAILGATE_AUTH_FAILURES_PER_MINUTE: '5', TAILGATE_AUTH_COOLDOWN_MS: '900000' }).authThrottle, { failuresPerMinute: 5, cooldownMs: 900_000 });
  assert.throws(
    () => loadConfig({ TAILGATE_AUTH_FAILURES_PER_MINUTE: 'many', TAILGATE_AUTH_COOLDOWN_MS: '10' }),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.problems.some((p) => p.startsWith('TAILGATE_AUTH_FAILURES_PER_MINUTE: expected a whole number')) &&
      err.problems.some((p) => p.startsWith('TAILGATE_AUTH_COOLDOWN_MS: 10 is out of range')),
  );
});
