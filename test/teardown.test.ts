// test/helpers/teardown.ts, which every GatewayScene and tailnet scene file ends with: the order parts are closed in,
// a part that hangs or fails reported while the parts after it are still closed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closeInTurn, Teardown } from './helpers/teardown.js';

test('parts are closed the last owned first, and a second run closes only what was owned since', async () => {
  const closed: string[] = [];
  const teardown = new Teardown();
  const db = teardown.own('the database', { name: 'db' }, (p) => closed.push(p.name));
  assert.equal(db.name, 'db', 'own returns the part');
  teardown.own('the device', 'device', (p) => closed.push(p));
  teardown.own('a gateway', 'gateway', async (p) => {
    await new Promise((r) => setTimeout(r, 20));
    closed.push(p);
  });
  await teardown.run();
  assert.deepEqual(closed, ['gateway', 'device', 'db']);
  teardown.own('the browser', 'browser', (p) => closed.push(p));
  await teardown.run();
  assert.deepEqual(closed, ['gateway', 'device', 'db', 'browser']);
});

test('a part that hangs is given up on after the timeout, one that throws is reported, and the rest are still closed', async () => {
  const closed: string[] = [];
  const started = performance.now();
  const run = closeInTurn(
    [
      { what: 'a gateway that never drains', close: () => new Promise(() => {}) },
      {
        what: 'a server',
        close: () => {
          throw new Error('not running');
        },
      },
      { what: 'the database', close: () => closed.push('db') },
    ],
    100,
  );
  const err = (await run.then(
    () => assert.fail('the run succeeded'),
    (e: unknown) => e,
  )) as AggregateError;
  const tookMs = performance.now() - started;
  assert.ok(err instanceof AggregateError, String(err));
  assert.deepEqual(
    err.errors.map((e: Error) => e.message),
    ['closing a gateway that never drains took more than 100 ms', 'closing a server: not running'],
  );
  assert.deepEqual(closed, ['db'], 'the part after the failures was closed');
  assert.ok(tookMs >= 95 && tookMs < 2_000, `took ${tookMs.toFixed(0)} ms`);
});

test('a single failure is thrown as it is, with its part named', async () => {
  await assert.rejects(closeInTurn([{ what: 'the echo target', close: () => Promise.reject(new Error('EBUSY')) }], 1_000), {
    message: 'closing the echo target: EBUSY',
  });
});
