// The accept guard on a real listening server: the cap from the descriptor limit, connections over it closed and
// counted with one log line per burst, and the accept-error path. Node 20 reports an accept error only when libuv's
// spare descriptor is gone too, which no test can arrange on purpose (test/faults/fd-exhaustion.test.ts shows the
// full table closing connections silently), so that path is driven by emitting the error Node would emit
// (`syscall: 'accept'`, code EMFILE) on the real server: what is checked is the guard's answer to it.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { ConfigError, loadConfig } from '../src/config.js';
import { AcceptGuard, connectionsPerListener, descriptorReserve, isAcceptError, readDescriptorLimit } from '../src/proxy/accept-guard.js';
import { Metrics } from '../src/tunnel/metrics.js';
import { waitFor } from '../testbed/wait.js';
import { closeServer, listen } from './helpers/targets.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c)) as Record<string, unknown>), cb()) }));
  return { log, lines };
}

/** Connects; resolves 'open' once the server's greeting byte arrives, or 'closed' if the server closes first. */
function probe(port: number, held: net.Socket[]): Promise<'open' | 'closed'> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(5_000, () => s.destroy());
    s.once('data', () => {
      held.push(s);
      resolve('open');
    });
    s.on('error', () => {});
    s.once('close', () => resolve('closed'));
  });
}

async function count(metrics: Metrics, listener: string, code: string): Promise<number> {
  const text = await metrics.registry.getSingleMetricAsString('tailgate_accept_errors_total');
  return Number(new RegExp(`listener="${listener}",code="${code}"} (\\d+)`).exec(text)?.[1] ?? 0);
}

test('the cap: two descriptors per tunnel after a reserve of 64 plus 1/64 of the limit', () => {
  assert.equal(descriptorReserve(256), 68);
  assert.equal(connectionsPerListener(256), 94);
  assert.equal(connectionsPerListener(1024), 472);
  assert.equal(connectionsPerListener(20_000), 9_812);
  assert.equal(connectionsPerListener(1_048_576), 516_064);
  assert.equal(connectionsPerListener(10), 1, 'never below one');
});

test('the descriptor limit is read from /proc (soft limit), unlimited or unreadable gives none', () => {
  const dir = os.tmpdir();
  const file = path.join(dir, `limits-${process.pid}`);
  writeFileSync(file, 'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            256                  4096                 files     \n');
  assert.equal(readDescriptorLimit(file), 256);
  writeFileSync(file, 'Max open files            unlimited            unlimited            files     \n');
  assert.equal(readDescriptorLimit(file), undefined);
  assert.equal(readDescriptorLimit(path.join(dir, 'no-such-limits-file')), undefined);
  assert.ok((readDescriptorLimit() ?? 0) > 0, 'this process has a limit in /proc/self/limits');
});

test('over the cap: closed at once, counted as fd_budget, one warning per burst and one summary after it', async () => {
  const metrics = new Metrics();
  const { log, lines } = capture();
  const server = net.createServer((s) => s.write('+'));
  new AcceptGuard(server, { listener: 'socks5', maxConnections: 3, errors: metrics.acceptErrors, log, quietMs: 300 });
  const port = await listen(server, '127.0.0.1');
  const held: net.Socket[] = [];
  try {
    const results = [];
    for (let i = 0; i < 8; i++) results.push(await probe(port, held));
    assert.deepEqual(results, ['open', 'open', 'open', 'closed', 'closed', 'closed', 'closed', 'closed']);
    assert.equal(await count(metrics, 'socks5', 'fd_budget'), 5);
    assert.equal(lines.filter((l) => l.msg === 'refusing new connections: the listener holds its share of the file descriptors').length, 1);
    await waitFor('the burst summary', 3_000, () => lines.find((l) => l.msg === 'connections accepted again after a burst of refusals'), 50);
    assert.equal(lines.find((l) => l.msg === 'connections accepted again after a burst of refusals')!.refused, 5);
    held.pop()!.destroy();
    await waitFor('a place free again', 3_000, async () => (await probe(port, held)) === 'open', 50);
  } finally {
    for (const s of held) s.destroy();
    await closeServer(server);
  }
});

test('an accept error (EMFILE): counted by code, logged once, accepting paused, then resumed; other errors are not its business', async () => {
  const metrics = new Metrics();
  const { log, lines } = capture();
  const server = net.createServer((s) => s.write('+'));
  const guard = new AcceptGuard(server, { listener: 'http', maxConnections: undefined, errors: metrics.acceptErrors, log, pauseMs: 400, quietMs: 300 });
  const port = await listen(server, '127.0.0.1');
  const held: net.Socket[] = [];
  try {
    assert.equal(await probe(port, held), 'open');
    const emfile = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', errno: -24, syscall: 'accept' });
    assert.ok(isAcceptError(emfile));
    for (let i = 0; i < 3; i++) server.emit('error', emfile);
    assert.equal(guard.paused, true);
    assert.equal(await count(metrics, 'http', 'EMFILE'), 3);
    assert.equal(lines.filter((l) => l.msg === 'accepting connections failed: out of file descriptors or socket memory').length, 1);
    // Paused: new connections are closed at once rather than held or failing again.
    assert.equal(await probe(port, held), 'closed');
    assert.equal(await count(metrics, 'http', 'paused'), 1, 'closed during the pause, counted as such');
    assert.equal(await count(metrics, 'http', 'fd_budget'), 0);
    await waitFor('accepting resumed', 3_000, () => !guard.paused, 20);
    assert.equal(await probe(port, held), 'open');
    assert.equal(await probe(port, held), 'open', 'no cap left behind by the pause');
    // A listen error is not an accept error: the guard leaves it to the listener's own handler.
    const other = Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE', syscall: 'listen' });
    assert.equal(isAcceptError(other), false);
    server.emit('error', other);
    assert.equal(guard.paused, false);
  } finally {
    for (const s of held) s.destroy();
    await closeServer(server);
  }
});

test('configuration: TAILGATE_MAX_CONNECTIONS is auto by default, 0 for no cap, a number for a fixed cap, else named', () => {
  assert.equal(loadConfig({}).maxConnections, 'auto');
  assert.equal(loadConfig({ TAILGATE_MAX_CONNECTIONS: 'auto' }).maxConnections, 'auto');
  assert.equal(loadConfig({ TAILGATE_MAX_CONNECTIONS: '0' }).maxConnections, 0);
  assert.equal(loadConfig({ TAILGATE_MAX_CONNECTIONS: '5000' }).maxConnections, 5_000);
  assert.throws(
    () => loadConfig({ TAILGATE_MAX_CONNECTIONS: 'lots' }),
    (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith('TAILGATE_MAX_CONNECTIONS: expected a whole number')),
  );
});
