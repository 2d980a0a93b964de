// The database breaker's rules on their own (the calls it guards are plain functions here; the database outage itself
// is test/faults/database-outage.test.ts): which errors open it, that it then refuses without calling, that a probe
// closes it, and that a slow call is refused without opening it unless the probe fails too.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { DatabaseBreaker, StoreUnavailableError } from '../src/store/breaker.js';
import { waitFor } from '../testbed/wait.js';

const log = pino({ level: 'silent' });
const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

function breaker(probe: () => Promise<void>) {
  return new DatabaseBreaker({ probe, timeoutMs: 300, probeEveryMs: 50, log });
}

test('an unreachable server opens it: calls are refused without running until a probe answers', async () => {
  let up = false;
  let recovered = 0;
  const b = breaker(async () => {
    if (!up) throw refused;
  });
  b.onRecovered(() => recovered++);
  try {
    assert.equal(await b.run(async () => 7), 7);
    await assert.rejects(b.run(() => Promise.reject(refused)), (err: unknown) => err instanceof StoreUnavailableError && err.reason === 'ECONNREFUSED');
    assert.equal(b.available, false);
    let ran = false;
    const t = performance.now();
    await assert.rejects(
      b.run(async () => (ran = true)),
      /^StoreUnavailableError: database unavailable \(ECONNREFUSED\)$/,
    );
    assert.equal(ran, false, 'not even tried');
    assert.ok(performance.now() - t < 50);
    up = true;
    await waitFor('the probe closing it', 5_000, () => b.available, 10);
    assert.equal(recovered, 1);
    assert.equal(await b.run(async () => 8), 8);
  } finally {
    b.close();
  }
});

test('a statement the server refuses does not open it, and a server going away (57P01) does', async () => {
  const b = breaker(async () => {
    throw refused;
  });
  try {
    const unique = Object.assign(new Error('duplicate key value'), { code: '23505' });
    await assert.rejects(b.run(() => Promise.reject(unique)), (err) => err === unique);
    assert.equal(b.available, true);
    const shutdown = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    await assert.rejects(b.run(() => Promise.reject(shutdown)), StoreUnavailableError);
    assert.equal(b.available, false);
  } finally {
    b.close();
  }
});

test('a call not answered in time is refused; it opens only when the probe fails too', async () => {
  let probeFails = false;
  const b = breaker(async () => {
    if (probeFails) throw refused;
  });
  const never = () => new Promise<never>(() => {});
  try {
    await assert.rejects(b.run(never), (err: unknown) => err instanceof StoreUnavailableError && err.reason === 'timeout');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(b.available, true, 'slow is not down when the probe answers');
    const waited = await Promise.race([b.run(never, 0).then(() => 'answered'), new Promise((r) => setTimeout(() => r('still waiting'), 400))]);
    assert.equal(waited, 'still waiting', 'timeout 0: no timeout');
    probeFails = true;
    await assert.rejects(b.run(never), StoreUnavailableError);
    await waitFor('the failed probe opening it', 5_000, () => !b.available, 10);
  } finally {
    b.close();
  }
});
