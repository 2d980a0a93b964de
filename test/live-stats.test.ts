// The sampler behind GET /stats, on a manual clock: rates from the tunnel counter and the usage recorder's byte totals
// (open meters sampled at each reading), and the ring buffer keeping the window and dropping the oldest points.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { LiveStats } from '../src/tunnel/live-stats.js';
import { Metrics } from '../src/tunnel/metrics.js';
import { UsageRecorder, type UsageMeter } from '../src/tunnel/usage.js';

const log = pino({ level: 'silent' });

function parts() {
  let now = 1_000_000;
  const metrics = new Metrics();
  // The sampler only reads the recorder's counters; nothing here is flushed, so no database is asked.
  const unused = () => Promise.reject(new Error('the sampler must not touch the database'));
  const usage = new UsageRecorder({ store: { addUsage: unused, keyBytesSince: unused, keyNames: unused }, log, flushMs: 60_000, maxCells: 100 });
  const stats = new LiveStats({ metrics, usage, intervalMs: 2_000, windowMs: 10_000, now: () => now });
  return { metrics, usage, stats, advance: (ms: number) => (now += ms) };
}

test('rates over each interval from the tunnel counter and the byte totals, an open tunnel counted while it runs', async () => {
  const { metrics, usage, stats, advance } = parts();
  await stats.sample();
  assert.deepEqual(stats.series(), [], 'the first reading is only a baseline');

  metrics.tunnelsTotal.labels('http').inc(3);
  metrics.tunnelsTotal.labels('socks5').inc(1);
  usage.bytes(1, 7, 1_000, 8_000);
  // A tunnel still open: its bytes so far are read when the sampler reads the recorder.
  let pending = 2_000;
  const open: UsageMeter = {
    reportUsage(r) {
      r.bytes(1, 7, 0, pending);
      pending = 0;
    },
  };
  usage.add(open);
  metrics.tunnelsOpen.labels('http').inc(2);
  advance(2_000);
  await stats.sample();
  assert.deepEqual(stats.series(), [{ t: 1_002_000, tunnelsPerSecond: 2, bytesUpPerSecond: 500, bytesDownPerSecond: 5_000 }]);
  assert.equal(await stats.tunnelsOpen(), 2);

  advance(4_000);
  await stats.sample();
  assert.deepEqual(stats.series().at(-1), { t: 1_006_000, tunnelsPerSecond: 0, bytesUpPerSecond: 0, bytesDownPerSecond: 0 });
});

test('the ring keeps the window, oldest first, and drops what falls out of it', async () => {
  const { metrics, stats, advance } = parts();
  await stats.sample();
  for (let i = 1; i <= 12; i++) {
    metrics.tunnelsTotal.labels('http').inc(i * 2);
    advance(2_000);
    await stats.sample();
  }
  const series = stats.series();
  // 10 s at 2 s: five points, the last five.
  assert.equal(series.length, 5);
  assert.deepEqual(series.map((p) => p.tunnelsPerSecond), [8, 9, 10, 11, 12]);
  assert.deepEqual(series.map((p) => p.t), [1_016_000, 1_018_000, 1_020_000, 1_022_000, 1_024_000]);
});

test('start() samples on its timer and close() stops it', async () => {
  const metrics = new Metrics();
  const stats = new LiveStats({ metrics, intervalMs: 20, windowMs: 1_000 });
  stats.start();
  const deadline = Date.now() + 2_000;
  while (stats.series().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  stats.close();
  const n = stats.series().length;
  assert.ok(n >= 2, `${n} points`);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(stats.series().length, n, 'no sample after close()');
});
