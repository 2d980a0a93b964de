// The sizes, rates, quotas and times the command line reads and prints: every unit, the edges, and what is refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { formatBytes, formatTime, instant, parseBytes, parseQuota, parseRate, wholeNumber } from '../src/cli/units.js';

test('sizes: powers of 1000 for k M G T P, of 1024 for Ki Mi Gi Ti Pi, B optional, case-insensitive, fractions rounded', () => {
  const cases: [string, number][] = [
    ['0', 0],
    ['1536', 1536],
    ['100b', 100],
    ['64k', 64_000],
    ['1kB', 1000],
    ['1KiB', 1024],
    ['512ki', 524_288],
    ['10MiB', 10 * 1024 ** 2],
    ['1MB', 1_000_000],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['1gb', 1e9],
    ['2 TiB', 2 * 1024 ** 4],
    ['1PB', 1e15],
    ['0.5B', 1],
  ];
  for (const [text, bytes] of cases) assert.equal(parseBytes(text), bytes, text);
  for (const bad of ['', 'MiB', '10i', '10 XB', '-1', '1e3', '10MiBs', '1,5G', '99999PiB']) {
    assert.throws(() => parseBytes(bad), InvalidArgumentError, bad);
  }
});

test('rates take an optional /s; quotas need a period', () => {
  assert.equal(parseRate('4MiB/s'), 4 * 1024 ** 2);
  assert.equal(parseRate('4MiB'), 4 * 1024 ** 2);
  assert.equal(parseRate('1MB/sec'), 1e6);
  assert.deepEqual(parseQuota('10GiB/month'), { bytes: 10 * 1024 ** 3, period: 'month' });
  assert.deepEqual(parseQuota('500MB/Day'), { bytes: 5e8, period: 'day' });
  assert.deepEqual(parseQuota('1TB/total'), { bytes: 1e12, period: 'total' });
  for (const bad of ['10GiB', '10GiB/week', '/month', 'x/day']) assert.throws(() => parseQuota(bad), InvalidArgumentError, bad);
});

test('sizes printed in powers of 1024 with at most one decimal', () => {
  const cases: [number, string][] = [
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1 KiB'],
    [1536, '1.5 KiB'],
    [1_048_576, '1 MiB'],
    [10 * 1024 ** 3, '10 GiB'],
    [1.25 * 1024 ** 4, '1.3 TiB'],
    [1024 ** 6, '1024 PiB'],
  ];
  for (const [bytes, text] of cases) assert.equal(formatBytes(bytes), text, String(bytes));
  // What is printed reads back as (about) what it was.
  for (const bytes of [1, 999, 4096, 3 * 1024 ** 2, 7 * 1024 ** 3]) assert.equal(parseBytes(formatBytes(bytes).replace(' ', '')), bytes);
});

test('times: durations back or ahead from now, "now", ISO times; printed in UTC to the minute', () => {
  const now = () => Date.parse('2026-12-01T12:00:00Z');
  assert.equal(instant('ago', now)('24h'), '2026-11-30T12:00:00.000Z');
  assert.equal(instant('ago', now)('90s'), '2026-12-01T11:58:30.000Z');
  assert.equal(instant('ahead', now)('2w'), '2026-12-15T12:00:00.000Z');
  assert.equal(instant('ahead', now)('30d'), '2026-12-31T12:00:00.000Z');
  assert.equal(instant('ago', now)('now'), '2026-12-01T12:00:00.000Z');
  assert.equal(instant('ago', now)('2026-11-01'), '2026-11-01T00:00:00.000Z');
  assert.equal(instant('ago', now)('2026-11-01T10:30:00+02:00'), '2026-11-01T08:30:00.000Z');
  for (const bad of ['yesterday', '24', '5y', '2026-13-01', '12:00']) assert.throws(() => instant('ago', now)(bad), InvalidArgumentError, bad);
  assert.equal(formatTime('2026-12-01T12:34:56.789Z'), '2026-12-01 12:34Z');
  assert.equal(formatTime(null), '-');
});

test('whole numbers within bounds', () => {
  const port = wholeNumber(1, 65535);
  assert.equal(port('8081'), 8081);
  for (const bad of ['0', '65536', '1.5', '-1', 'x', '', '1e3']) assert.throws(() => port(bad), InvalidArgumentError, bad);
});
