// Choosing the device (issue 10): device health and its breaker, least-loaded spread, sticky sessions by rendezvous
// hashing, session pins, filters and failover. Everything is pure state: the clock moves only when a test advances
// it and randomness is a stub where the outcome matters, so nothing sleeps.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FailureReason } from '../src/core/failure.js';
import { BREAKER_OPEN_MS, DeviceBoard, failureScope } from '../src/tunnel/device-health.js';
import { deviceSeed, mixFirst, sessionHash, weight, weightRank } from '../src/tunnel/rendezvous.js';
import { type Candidate, DeviceSelector, MAX_FAILOVERS, type Selection } from '../src/tunnel/select.js';
import { SessionPins } from '../src/tunnel/session-pins.js';

class ManualClock {
  private ms = 1_000_000;
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

function device(id: number, country?: string, name = `phone-${id}`): Candidate {
  return { id, name, labels: country === undefined ? {} : { country } };
}

function fleet(n: number): Candidate[] {
  return Array.from({ length: n }, (_, i) => device(i + 1, i % 2 === 0 ? 'DE' : 'fr'));
}

function setup(opts: { random?: () => number; maxPins?: number } = {}) {
  const clock = new ManualClock();
  const board = new DeviceBoard({ clock });
  const selector = new DeviceSelector(board, opts);
  return { clock, board, selector };
}

/** Two gateways' selectors over the same devices, each with its own state; the second lists them in reverse. */
function twoGateways(n: number) {
  const a = setup();
  const b = setup();
  const devices = fleet(n);
  return { a, b, setA: a.selector.prepare(devices), setB: b.selector.prepare([...devices].reverse()) };
}

function chosen(r: Candidate | string): Candidate {
  assert.notEqual(typeof r, 'string', `expected a device, got ${String(r)}`);
  return r as Candidate;
}

const MINUTE = 60_000;

describe('failure scope', () => {
  test('only failures before the TCP connection to the device count against it, and never our own tailnet', () => {
    const device: FailureReason[] = ['offline', 'unreachable', 'refused', 'timeout'];
    for (const r of device) assert.equal(failureScope(r, false), 'device', r);
    for (const r of ['network-down', 'not-allowed', 'protocol', 'error'] as FailureReason[]) assert.equal(failureScope(r, false), 'gateway', r);
    for (const r of [...device, 'network-down', 'not-allowed', 'protocol', 'error'] as FailureReason[]) assert.equal(failureScope(r, true), 'destination', r);
  });
});

describe('device health', () => {
  test('down when disabled or offline, unknown without any status, up when online or after a success', () => {
    const { board, clock } = setup();
    const s = board.state(1);
    assert.deepEqual(board.view(1), { health: 'unknown', reason: 'no-status', since: clock.now(), openTunnels: 0 });
    assert.ok(board.eligible(s), 'a device nobody has an opinion on can be tried');
    clock.advance(5);
    board.setOnline(1, true);
    assert.deepEqual(board.view(1), { health: 'up', reason: 'online', since: clock.now(), openTunnels: 0 });
    clock.advance(5);
    board.setOnline(1, false);
    assert.deepEqual(board.view(1), { health: 'down', reason: 'offline', since: clock.now(), openTunnels: 0 });
    assert.equal(board.eligible(s), false);
    board.setOnline(1, undefined);
    clock.advance(5);
    board.setEnabled(1, false);
    assert.equal(board.view(1).reason, 'disabled');
    assert.equal(board.eligible(s), false);
    board.setEnabled(1, true);
    board.succeeded(s);
    assert.equal(board.view(1).health, 'up');
    assert.equal(board.view(1).reason, 'connected');
    board.tunnelOpened(s);
    board.tunnelOpened(s);
    board.tunnelClosed(s);
    assert.equal(board.view(1).openTunnels, 1);
  });

  test('the breaker: 3 device-level failures open it for 10 s, then exactly one trial decides, both ways', () => {
    const { board, clock, selector } = setup();
    const set = selector.prepare([device(1)]);
    const s = board.state(1);
    board.setOnline(1, true);
    board.failed(s, 'timeout', false);
    board.failed(s, 'refused', false);
    assert.equal(board.view(1).health, 'up', 'two failures are not enough');
    board.failed(s, 'unreachable', false);
    const opened = clock.now();
    assert.deepEqual(board.view(1), { health: 'down', reason: 'dial-failures', since: opened, lastFailure: 'unreachable', openTunnels: 0 });
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device');

    clock.advance(BREAKER_OPEN_MS - 1);
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device', 'still open 1 ms before the end');
    clock.advance(1);
    assert.deepEqual(board.view(1), { health: 'unknown', reason: 'half-open', since: opened + BREAKER_OPEN_MS, lastFailure: 'unreachable', openTunnels: 0 });
    assert.equal(chosen(selector.choose(set, { keyId: 1 })).id, 1, 'the trial connection');
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device', 'only one trial at a time');
    board.failed(s, 'timeout', false);
    assert.equal(board.view(1).health, 'down', 'a failed trial opens it again');
    assert.equal(board.view(1).since, clock.now());
    clock.advance(BREAKER_OPEN_MS - 1);
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device', 'for another 10 s');
    clock.advance(1);
    assert.equal(chosen(selector.choose(set, { keyId: 1 })).id, 1, 'the second trial');
    board.succeeded(s);
    assert.deepEqual(board.view(1), { health: 'up', reason: 'online', since: clock.now(), openTunnels: 0 });
    for (let i = 0; i < 5; i++) assert.equal(chosen(selector.choose(set, { keyId: 1 })).id, 1, 'closed: every connection goes through');
  });

  test('a success resets the count: failures must be consecutive', () => {
    const { board } = setup();
    const s = board.state(1);
    for (let round = 0; round < 3; round++) {
      board.failed(s, 'timeout', false);
      board.failed(s, 'timeout', false);
      board.succeeded(s);
    }
    assert.ok(board.eligible(s));
    assert.equal(board.view(1).lastFailure, undefined);
  });

  test('destination-level and gateway-level failures never trip the breaker', () => {
    const { board } = setup();
    const s = board.state(1);
    for (let i = 0; i < 10; i++) {
      assert.equal(board.failed(s, 'refused', true), 'destination');
      assert.equal(board.failed(s, 'timeout', true), 'destination');
      assert.equal(board.failed(s, 'unreachable', true), 'destination');
      assert.equal(board.failed(s, 'network-down', false), 'gateway');
    }
    assert.ok(board.eligible(s));
    assert.equal(board.view(1).health, 'unknown');
    assert.equal(board.view(1).lastFailure, undefined);
  });

  test('a trial that ends in a failure that says nothing about the device frees the slot for the next one', () => {
    const { board, clock, selector } = setup();
    const set = selector.prepare([device(1)]);
    const s = board.state(1);
    for (let i = 0; i < 3; i++) board.failed(s, 'timeout', false);
    clock.advance(BREAKER_OPEN_MS);
    chosen(selector.choose(set, { keyId: 1 }));
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device');
    board.failed(s, 'unreachable', true);
    assert.equal(board.view(1).reason, 'half-open');
    chosen(selector.choose(set, { keyId: 1 }));
  });

  test('a trial that never reports back loses its slot after the lease', () => {
    const clock = new ManualClock();
    const board = new DeviceBoard({ clock, trialLeaseMs: 20_000 });
    const selector = new DeviceSelector(board);
    const set = selector.prepare([device(1)]);
    for (let i = 0; i < 3; i++) board.failed(board.state(1), 'offline', false);
    clock.advance(BREAKER_OPEN_MS);
    chosen(selector.choose(set, { keyId: 1 }));
    clock.advance(19_999);
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device');
    clock.advance(1);
    chosen(selector.choose(set, { keyId: 1 }));
  });

  test('a forgotten device is never handed out by a list prepared before', () => {
    const { board, selector } = setup();
    const set = selector.prepare([device(1), device(2)]);
    const old = board.state(1);
    board.forget(1);
    for (let i = 0; i < 20; i++) assert.equal(chosen(selector.choose(set, { keyId: 1 })).id, 2);
    board.succeeded(old);
    assert.equal(chosen(selector.choose(set, { keyId: 1 })).id, 2, 'an outcome reported late on the old state does not revive it');
    board.state(1);
    assert.equal(chosen(selector.choose(set, { keyId: 1 })).id, 2, 'a new state for the id does not revive the old slot');
  });

  test('grows past its initial slots', () => {
    const { board, selector } = setup();
    const devices = fleet(300);
    board.tunnelOpened(board.state(1));
    const set = selector.prepare(devices);
    for (const d of devices) if (d.id !== 7) board.tunnelOpened(board.state(d.id));
    assert.equal(chosen(selector.choose(set, { keyId: 1 })).id, 7);
    assert.equal(board.view(1).openTunnels, 2, 'counts survive growing');
  });
});

describe('choosing without a session', () => {
  test('the least loaded eligible device', () => {
    const { board, selector } = setup();
    const set = selector.prepare(fleet(4));
    const loads = [3, 1, 2, 1];
    loads.forEach((n, i) => {
      for (let k = 0; k < n; k++) board.tunnelOpened(board.state(i + 1));
    });
    board.setOnline(2, false);
    for (let i = 0; i < 10; i++) assert.equal(chosen(selector.choose(set, { keyId: 1 })).id, 4);
  });

  test('ties are broken by the random source, over the tied devices only', () => {
    let next = 0;
    const { board, selector } = setup({ random: () => next });
    const set = selector.prepare(fleet(5));
    board.tunnelOpened(board.state(2));
    // Tied at 0: devices 1, 3, 4, 5.
    const picks: number[] = [];
    for (const r of [0, 0.25, 0.5, 0.99]) {
      next = r;
      picks.push(chosen(selector.choose(set, { keyId: 1 })).id);
    }
    assert.deepEqual(picks, [1, 3, 4, 5]);
  });

  test('with the random source, every tied device is about equally likely, and no other ever comes up', () => {
    const { board, selector } = setup();
    const devices = fleet(10);
    const set = selector.prepare(devices);
    const count = (choices: number): Map<number, number> => {
      const counts = new Map<number, number>();
      for (let i = 0; i < choices; i++) {
        const id = chosen(selector.choose(set, { keyId: 1 })).id;
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      return counts;
    };
    // All tied: 2,000 each on average, a standard deviation of about 42.
    const all = count(20_000);
    assert.equal(all.size, 10);
    for (const [id, n] of all) assert.ok(n > 1700 && n < 2300, `device ${id} chosen ${n} times of 20000`);
    // Tied at the lowest load: 4 and 5 (after a run of busier devices), 8, 9 and 10; 7 is down.
    for (const id of [1, 2, 3, 6]) board.tunnelOpened(board.state(id));
    board.setOnline(7, false);
    const some = count(10_000);
    assert.deepEqual([...some.keys()].sort((a, b) => a - b), [4, 5, 8, 9, 10]);
    for (const [id, n] of some) assert.ok(n > 1700 && n < 2300, `device ${id} chosen ${n} times of 10000`);
  });

  test('spreads connections evenly as the tunnels open', () => {
    const { board, selector } = setup();
    const devices = fleet(5);
    const set = selector.prepare(devices);
    for (let i = 0; i < 100; i++) board.tunnelOpened(board.state(chosen(selector.choose(set, { keyId: 1 })).id));
    for (const d of devices) assert.equal(board.view(d.id).openTunnels, 20);
  });

  test('no_device when nothing is eligible, or the list is empty', () => {
    const { board, selector } = setup();
    assert.equal(selector.choose(selector.prepare([]), { keyId: 1 }), 'no_device');
    assert.equal(selector.choose(selector.prepare([]), { keyId: 1, session: 'a' }), 'no_device');
    const set = selector.prepare(fleet(2));
    board.setOnline(1, false);
    board.setEnabled(2, false);
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device');
    assert.equal(selector.choose(set, { keyId: 1, session: 'a' }), 'no_device');
  });
});

describe('sticky sessions', () => {
  test('the same key and session keep their device whatever the load', () => {
    const { board, selector } = setup();
    const set = selector.prepare(fleet(20));
    const first = chosen(selector.choose(set, { keyId: 9, session: 'abc' }));
    for (let i = 0; i < 50; i++) {
      const d = chosen(selector.choose(set, { keyId: 9, session: 'abc' }));
      assert.equal(d.id, first.id);
      board.tunnelOpened(board.state(d.id));
    }
  });

  test('two independent selectors (two gateways, or a restart) make the same first choice, whatever the list order', () => {
    const { a, b, setA, setB } = twoGateways(50);
    const counts = new Map<number, number>();
    for (let i = 0; i < 2000; i++) {
      const sel: Selection = { keyId: 1 + (i % 3), session: `s${i}` };
      const da = chosen(a.selector.choose(setA, sel));
      assert.equal(chosen(b.selector.choose(setB, sel)).id, da.id, `session ${sel.session}`);
      counts.set(da.id, (counts.get(da.id) ?? 0) + 1);
    }
    // 40 per device on average: a well-mixed hash leaves none far out.
    assert.equal(counts.size, 50);
    for (const [id, n] of counts) assert.ok(n >= 15 && n <= 70, `device ${id} got ${n} of 2000 sessions`);
  });

  test('the choice is the eligible device of highest weight, ties to the lower id, whatever the list order', () => {
    const { board, selector } = setup();
    const devices = fleet(200);
    for (let id = 3; id <= 200; id += 7) board.setOnline(id, false);
    const sets = [selector.prepare(devices), selector.prepare([...devices].reverse())];
    for (let i = 0; i < 500; i++) {
      const h = sessionHash(4, `w${i}`);
      let best = -1;
      let bestWeight = -1;
      for (const d of devices) {
        const w = weight(h, deviceSeed(d.id));
        if (board.eligible(board.state(d.id)) && (w > bestWeight || (w === bestWeight && d.id < best))) {
          best = d.id;
          bestWeight = w;
        }
      }
      for (const set of sets) assert.equal(chosen(selector.choose(set, { keyId: 4, session: `w${i}` })).id, best, `session w${i}`);
    }
    // Equal weights only come from the same id listed twice: the first listed wins, as before.
    const twice = [device(5), device(9), device(5)];
    for (let i = 0; i < 20; i++) {
      const d = chosen(selector.choose(selector.prepare(twice), { keyId: 4, session: `t${i}` }));
      assert.notEqual(d, twice[2]);
    }
  });

  test('weightRank orders as weight does: weight - 2^31, from the first mixing step of each side', () => {
    const values = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x5bd1e995, 0x9747b28c];
    for (let i = 0; i < 2000; i++) values.push(Math.floor(Math.random() * 0x1_0000_0000));
    for (let i = 0; i < values.length; i++) {
      const a = values[i]!;
      const b = values[(i * 7 + 3) % values.length]!;
      assert.equal(weightRank(mixFirst(a), mixFirst(b)), weight(a, b) - 0x80000000, `weight(${a}, ${b})`);
    }
  });

  test('the key is part of the hash: the same session name under another key is an independent choice', () => {
    const { selector } = setup();
    const set = selector.prepare(fleet(50));
    let same = 0;
    for (let i = 0; i < 200; i++) {
      if (chosen(selector.choose(set, { keyId: 1, session: `s${i}` })).id === chosen(selector.choose(set, { keyId: 2, session: `s${i}` })).id) same++;
    }
    assert.ok(same < 20, `${same} of 200 sessions landed on the same device under both keys`);
  });

  test('removing a device moves only the sessions that were on it', () => {
    const devices = fleet(10);
    const before = setup();
    const after = setup();
    const setBefore = before.selector.prepare(devices);
    const setAfter = after.selector.prepare(devices.filter((d) => d.id !== 4));
    let onRemoved = 0;
    for (let i = 0; i < 1000; i++) {
      const sel: Selection = { keyId: 5, session: `sess_${i}` };
      const was = chosen(before.selector.choose(setBefore, sel)).id;
      const now = chosen(after.selector.choose(setAfter, sel)).id;
      if (was === 4) onRemoved++;
      else assert.equal(now, was, `session ${sel.session} moved off device ${was}`);
    }
    assert.ok(onRemoved > 50, `${onRemoved} sessions were on the removed device`);
  });

  test('soft (the default): a session whose device goes down moves to another, and stays there when it comes back', () => {
    const { board, selector } = setup();
    const set = selector.prepare(fleet(10));
    const sel: Selection = { keyId: 3, session: 'mover' };
    const first = chosen(selector.choose(set, sel));
    board.setOnline(first.id, false);
    const second = chosen(selector.choose(set, sel));
    assert.notEqual(second.id, first.id);
    board.setOnline(first.id, true);
    for (let i = 0; i < 5; i++) assert.equal(chosen(selector.choose(set, sel)).id, second.id);
  });

  test('a moved session goes to the rendezvous choice among the devices left, the same one on every gateway', () => {
    const { a, b, setA, setB } = twoGateways(10);
    const sel: Selection = { keyId: 3, session: 'mover' };
    const first = chosen(a.selector.choose(setA, sel));
    a.board.setOnline(first.id, false);
    b.board.setOnline(first.id, false);
    assert.equal(chosen(a.selector.choose(setA, sel)).id, chosen(b.selector.choose(setB, sel)).id);
  });

  test('strict: a session whose device is down is refused, and resumes on it when it is back', () => {
    const { board, selector } = setup();
    const set = selector.prepare(fleet(10));
    const sel: Selection = { keyId: 3, session: 'stay', strict: true };
    const first = chosen(selector.choose(set, sel));
    board.setOnline(first.id, false);
    assert.equal(selector.choose(set, sel), 'session_device_down');
    assert.equal(selector.choose(set, sel), 'session_device_down');
    board.setOnline(first.id, true);
    assert.equal(chosen(selector.choose(set, sel)).id, first.id);
  });

  test('strict: a process that never saw the session refuses it too while its device is down (pins are per process)', () => {
    // Two worker processes (or gateways): each its own board, selector and pins.
    const a = setup();
    const b = setup();
    const devices = fleet(10);
    const setA = a.selector.prepare(devices);
    const setB = b.selector.prepare(devices);
    const sel: Selection = { keyId: 3, session: 'everywhere', strict: true };
    const first = chosen(a.selector.choose(setA, sel));
    a.board.setOnline(first.id, false);
    b.board.setOnline(first.id, false);
    assert.equal(a.selector.choose(setA, sel), 'session_device_down');
    assert.equal(b.selector.choose(setB, sel), 'session_device_down', 'the process without a pin');
    // A soft session of the same name moves, in both.
    assert.notEqual(chosen(b.selector.choose(setB, { ...sel, strict: false })).id, first.id);
    a.board.setOnline(first.id, true);
    b.board.setOnline(first.id, true);
    assert.equal(chosen(a.selector.choose(setA, sel)).id, first.id);
  });

  test('strict: a session whose device left the key\'s target is refused too', () => {
    const { selector } = setup();
    const devices = fleet(10);
    const sel: Selection = { keyId: 3, session: 'stay', strict: true };
    const first = chosen(selector.choose(selector.prepare(devices), sel));
    const without = selector.prepare(devices.filter((d) => d.id !== first.id));
    assert.equal(selector.choose(without, sel), 'session_device_down');
    assert.notEqual(chosen(selector.choose(without, { ...sel, strict: false })).id, first.id);
  });

  test('a pin idles out after sesstime minutes without a connection; each connection restarts the clock', () => {
    const { board, clock, selector } = setup();
    const set = selector.prepare(fleet(10));
    const sel: Selection = { keyId: 3, session: 'idle', sessTimeMin: 5 };
    const home = chosen(selector.choose(set, sel));
    board.setOnline(home.id, false);
    const moved = chosen(selector.choose(set, sel));
    board.setOnline(home.id, true);
    for (let i = 0; i < 3; i++) {
      clock.advance(5 * MINUTE);
      assert.equal(chosen(selector.choose(set, sel)).id, moved.id, 'exactly sesstime idle: still pinned');
    }
    clock.advance(5 * MINUTE + 1);
    assert.equal(chosen(selector.choose(set, sel)).id, home.id, 'idled out: the rendezvous choice again');
  });

  test('sesstime defaults to 10 minutes', () => {
    const { board, clock, selector } = setup();
    const set = selector.prepare(fleet(10));
    const sel: Selection = { keyId: 3, session: 'idle' };
    const home = chosen(selector.choose(set, sel));
    board.setOnline(home.id, false);
    const moved = chosen(selector.choose(set, sel));
    board.setOnline(home.id, true);
    clock.advance(10 * MINUTE);
    assert.equal(chosen(selector.choose(set, sel)).id, moved.id);
    clock.advance(10 * MINUTE + 1);
    assert.equal(chosen(selector.choose(set, sel)).id, home.id);
  });

  test('the pin table is bounded: past its size the least recently used pin goes', () => {
    const clock = new ManualClock();
    const pins = new SessionPins(3, clock);
    pins.set('1:a', 1, MINUTE);
    pins.set('1:b', 2, MINUTE);
    pins.set('1:c', 3, MINUTE);
    pins.use('1:a', pins.get('1:a')!, MINUTE);
    pins.set('1:d', 4, MINUTE);
    assert.equal(pins.size, 3);
    assert.equal(pins.get('1:b'), undefined, 'b was the least recently used');
    assert.equal(pins.get('1:a')?.deviceId, 1);
    assert.equal(pins.get('1:d')?.deviceId, 4);

    const { selector } = setup({ maxPins: 100 });
    const set = selector.prepare(fleet(10));
    for (let i = 0; i < 1000; i++) chosen(selector.choose(set, { keyId: 1, session: `s${i}` }));
    assert.equal(selector.pins.size, 100);
  });

  test('the pin table keeps the most recently used pins through many evictions and deletes', () => {
    const clock = new ManualClock();
    const pins = new SessionPins(50, clock);
    for (let i = 1; i < 5000; i++) {
      pins.set(`k:${i}`, i, MINUTE);
      // One old pin in use all along is never the one evicted.
      if (i === 1) pins.set('k:0', 0, MINUTE);
      pins.use('k:0', pins.get('k:0')!, MINUTE);
      if (i % 97 === 0) pins.delete(`k:${i - 3}`);
    }
    assert.equal(pins.size, 50);
    assert.equal(pins.get('k:0')?.deviceId, 0);
    for (let i = 4951; i < 5000; i++) assert.equal(pins.get(`k:${i}`)?.deviceId, i, `pin ${i}`);
    assert.equal(pins.get('k:4950'), undefined, 'evicted: the least recently used');

    // A pin dropped between get and use (idled out) comes back with use.
    const small = new SessionPins(2, clock);
    small.set('a', 1, 10);
    const pin = small.get('a')!;
    clock.advance(11);
    assert.equal(small.get('a'), undefined);
    small.use('a', pin, 10);
    assert.equal(small.get('a')?.deviceId, 1);
    assert.equal(small.size, 1);
  });
});

describe('filters', () => {
  test('country matches the label case-insensitively, and the choice stays within it', () => {
    const { selector } = setup();
    const set = selector.prepare(fleet(10));
    for (const country of ['de', 'DE', 'De']) {
      for (let i = 0; i < 20; i++) {
        assert.equal(chosen(selector.choose(set, { keyId: 1, country })).labels.country, 'DE');
        assert.equal(chosen(selector.choose(set, { keyId: 1, country, session: `s${i}` })).labels.country, 'DE');
      }
    }
    assert.equal(selector.choose(set, { keyId: 1, country: 'us' }), 'no_device');
  });

  test('device by id or by name, only within the key\'s target', () => {
    const { board, selector } = setup();
    const devices = [device(1, 'de', 'berlin'), device(2, 'fr', 'paris'), device(3, 'de', '1')];
    const set = selector.prepare(devices);
    assert.equal(chosen(selector.choose(set, { keyId: 1, device: 'paris' })).id, 2);
    assert.equal(chosen(selector.choose(set, { keyId: 1, device: '2' })).id, 2);
    assert.equal(chosen(selector.choose(set, { keyId: 1, device: '1' })).id, 1, 'an id wins over a name that looks like one');
    assert.equal(chosen(selector.choose(set, { keyId: 1, device: '3' })).id, 3);
    assert.equal(chosen(selector.choose(set, { keyId: 1, device: 'berlin', country: 'DE' })).id, 1);
    assert.equal(selector.choose(set, { keyId: 1, device: 'berlin', country: 'fr' }), 'no_device');
    assert.equal(selector.choose(set, { keyId: 1, device: '4' }), 'no_device', 'not in the target');
    assert.equal(selector.choose(set, { keyId: 1, device: 'rome' }), 'no_device');
    board.setOnline(2, false);
    assert.equal(selector.choose(set, { keyId: 1, device: 'paris' }), 'no_device', 'the one device is down');
  });

  test('a pinned device that the filters leave out is a new choice, not a refusal', () => {
    const { selector } = setup();
    const set = selector.prepare(fleet(10));
    const sel: Selection = { keyId: 1, session: 'x', strict: true };
    const first = chosen(selector.choose(set, sel));
    const other = first.labels.country === 'DE' ? 'fr' : 'de';
    const d = chosen(selector.choose(set, { ...sel, country: other }));
    assert.equal(d.labels.country?.toLowerCase(), other);
  });
});

describe('failover', () => {
  test('the next eligible device, never one tried, at most 2 more', () => {
    const { board, selector } = setup();
    const set = selector.prepare(fleet(6));
    const sel: Selection = { keyId: 1 };
    const tried = [chosen(selector.choose(set, sel))];
    for (let i = 0; i < MAX_FAILOVERS; i++) {
      assert.equal(board.failed(board.state(tried.at(-1)!.id), 'timeout', false), 'device');
      const next = selector.failover(set, sel, tried);
      assert.ok(next !== null);
      assert.ok(!tried.includes(next));
      tried.push(next);
    }
    assert.equal(selector.failover(set, sel, tried), null, 'three attempts in all');
  });

  test('null when no eligible device is left', () => {
    const { board, selector } = setup();
    const set = selector.prepare(fleet(2));
    const first = chosen(selector.choose(set, { keyId: 1 }));
    board.setOnline(first.id === 1 ? 2 : 1, false);
    assert.equal(selector.failover(set, { keyId: 1 }, [first]), null);
  });

  test('a session moves to the device it failed over to and stays there; strict does not fail over', () => {
    const { selector } = setup();
    const set = selector.prepare(fleet(6));
    const sel: Selection = { keyId: 1, session: 'fo' };
    const first = chosen(selector.choose(set, sel));
    const next = selector.failover(set, sel, [first]);
    assert.ok(next !== null && next.id !== first.id);
    assert.equal(chosen(selector.choose(set, sel)).id, next.id);
    const strict: Selection = { keyId: 1, session: 'fs', strict: true };
    assert.equal(selector.failover(set, strict, [chosen(selector.choose(set, strict))]), null);
  });

  test('for a session, the failover order is the rendezvous order, the same on every gateway', () => {
    const { a, b, setA, setB } = twoGateways(10);
    const sel: Selection = { keyId: 1, session: 'order' };
    const triedA = [chosen(a.selector.choose(setA, sel))];
    const triedB = [chosen(b.selector.choose(setB, sel))];
    for (let i = 0; i < MAX_FAILOVERS; i++) {
      triedA.push(a.selector.failover(setA, sel, triedA)!);
      triedB.push(b.selector.failover(setB, sel, triedB)!);
    }
    assert.deepEqual(
      triedA.map((d) => d.id),
      triedB.map((d) => d.id),
    );
  });
});
