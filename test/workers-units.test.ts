// The parts of worker processes that need no process: the primary's count of places and rate tokens (SharedSlots),
// a KeyGate admitting through it, and the tailnet mirror a worker sees the primary's tailscaled through.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter } from 'prom-client';
import { KeyGate, LimitBook, type SharedAdmission } from '../src/tunnel/limits.js';
import type { Refusal } from '../src/tunnel/refusal.js';
import { SharedShaping, SharedSlots } from '../src/tunnel/shared-limits.js';
import type { TailnetState, TailnetView } from '../src/tailnet/types.js';
import { answerTailnetCall, TailnetMirror, TailnetPublisher, type TailnetSnapshot } from '../src/workers/tailnet-mirror.js';

const req = (keyId: number, maxTunnels: number, rate = 0, burst = 0) => ({ keyId, maxTunnels, rate, burst });

test('SharedSlots: one count of places over every holder, freed when a holder goes', () => {
  const slots = new SharedSlots();
  assert.equal(slots.acquire(1, req(7, 3)), null);
  assert.equal(slots.acquire(2, req(7, 3)), null);
  assert.equal(slots.acquire(2, req(7, 3)), null);
  assert.equal(slots.acquire(1, req(7, 3)), 'tunnel-limit');
  assert.equal(slots.open(7), 3);
  // A release by a holder that holds none of the key's places changes nothing.
  slots.release(3, 7);
  assert.equal(slots.open(7), 3);
  slots.release(1, 7);
  assert.equal(slots.acquire(2, req(7, 3)), null);
  // Holder 2 dies with three places: they are free again, holder 1's none.
  slots.holderGone(2);
  assert.equal(slots.open(7), 0);
  assert.equal(slots.acquire(1, req(7, 3)), null);
});

test('SharedSlots: the rate bucket is one for every holder; a place refused takes no token', () => {
  const slots = new SharedSlots();
  const at = 1_000;
  // 2 per second, burst 2: two at once, the third waits half a second.
  assert.equal(slots.acquire(1, req(9, Infinity, 2, 2), at), null);
  assert.equal(slots.acquire(2, req(9, Infinity, 2, 2), at), null);
  const refused = slots.acquire(1, req(9, Infinity, 2, 2), at);
  assert.ok(refused !== null && typeof refused === 'object');
  assert.equal(refused.waitS, 0.5);
  assert.equal(slots.acquire(2, req(9, Infinity, 2, 2), at + 500), null);
  // With maxTunnels reached, a refusal for places leaves the bucket as it was.
  const capped = new SharedSlots();
  assert.equal(capped.acquire(1, req(5, 1, 1, 1), at), null);
  assert.equal(capped.acquire(1, req(5, 1, 1, 1), at + 2_000), 'tunnel-limit');
  capped.release(1, 5);
  assert.equal(capped.acquire(1, req(5, 1, 1, 1), at + 2_000), null);
});

test('a KeyGate with a SharedAdmission asks it only for maxTunnels and tunnelsPerSecond, and gives places back', async () => {
  const slots = new SharedSlots();
  const asked: number[] = [];
  const released: number[] = [];
  const shared: SharedAdmission = {
    acquire(gate: KeyGate): Promise<Refusal | null> {
      asked.push(gate.keyId);
      return Promise.resolve(gate.settle(slots.acquire(1, { keyId: gate.keyId, ...gate.admission })));
    },
    release(keyId) {
      released.push(keyId);
      slots.release(1, keyId);
    },
    shaping(keyId, tunnels) {
      shaped.push([keyId, tunnels]);
    },
  };
  const shaped: [number, number][] = [];
  const ledger = { usedSince: () => 0, track: () => {} };
  const book = new LimitBook({ ledger, refusals: new Counter({ name: 'units_refusals', help: 'x', labelNames: ['reason'] as const, registers: [] }), quotaCheckMs: 1_000, shared });
  const capsOnly = book.gate(1, 'a', { bytesPerSecondDown: 1_000_000 })!;
  assert.equal(capsOnly.admit(), null, 'a key with caps only is admitted here, synchronously');
  capsOnly.release();
  assert.deepEqual(asked, []);
  assert.deepEqual(released, []);
  const limited = book.gate(2, 'b', { maxTunnels: 1 })!;
  const first = limited.admit();
  assert.ok(first instanceof Promise);
  assert.equal(await first, null);
  const second = await limited.admit();
  assert.equal(second?.reason, 'tunnel-limit');
  limited.release();
  assert.deepEqual(released, [2]);
  assert.equal(await limited.admit(), null);
  // A capped key reports its tunnels' number; its buckets run at the share it is given.
  const t = { reportUsage() {}, cut() {}, wake() {} };
  capsOnly.follow(t);
  capsOnly.unfollow(t);
  assert.deepEqual(shaped, [[1, 0], [1, 1], [1, 0]]);
  assert.equal(capsOnly.down!.bytesPerSecond, 1_000_000);
  capsOnly.setShare(0.25);
  assert.equal(capsOnly.down!.bytesPerSecond, 250_000);
  // New limits keep the share.
  book.gate(1, 'a', { bytesPerSecondDown: 2_000_000 });
  assert.equal(capsOnly.down!.bytesPerSecond, 500_000);
  book.close();
});

test('SharedShaping: a key’s caps split by each holder’s number of its tunnels, adding up to one', () => {
  const shaping = new SharedShaping();
  assert.deepEqual([...shaping.set(1, 4, 1)], [[1, 1]]);
  assert.deepEqual([...shaping.set(2, 4, 1)], [[1, 0.5], [2, 0.5]]);
  assert.deepEqual([...shaping.set(2, 4, 3)], [[1, 0.25], [2, 0.75]]);
  // Unchanged shares are not told again.
  assert.deepEqual([...shaping.set(2, 4, 3)], []);
  assert.deepEqual([...shaping.holderGone(2)], [[4, new Map([[1, 1]])]]);
  assert.deepEqual([...shaping.set(1, 4, 0)], []);
  assert.deepEqual([...shaping.set(3, 4, 2)], [[3, 1]]);
});

test('TailnetMirror follows what the TailnetPublisher sends, and asks the primary only about warm-ups, checks and control', async () => {
  let state: TailnetState = { running: true, backendState: 'Running', selfIps: ['100.64.0.1'], ready: true };
  let unavailable: string | null = null;
  const online = new Map<string, boolean | undefined>([['100.64.0.2', true]]);
  const listeners = new Set<(ip: string, online: boolean | undefined) => void>();
  const warm = new Map<string, Promise<boolean>>();
  let synced = true;
  const calls: string[] = [];
  const view: TailnetView = {
    state: () => state,
    unavailableReason: () => unavailable,
    peerOnline: (ip) => online.get(ip),
    warming: (ip) => warm.get(ip),
    warmingIps: () => [...warm.keys()],
    checkPeer: (ip) => Promise.resolve({ online: online.get(ip), liveSession: true }),
    controlSync: (ms) => (synced ? null : new Promise((r) => setTimeout(r, Math.min(ms, 30)))),
    onPeerChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
  const mirror = new TailnetMirror((c) => {
    calls.push(c.method);
    return answerTailnetCall(view, c);
  });
  assert.notEqual(mirror.unavailableReason(), null, 'unavailable until the primary reports');
  const sent: TailnetSnapshot[] = [];
  const publisher = new TailnetPublisher(view, (s) => {
    sent.push(s);
    mirror.apply(structuredClone(s));
  }, 20);
  mirror.apply(structuredClone(publisher.full(['100.64.0.2', '100.64.0.3'])));
  await mirror.first;
  assert.equal(mirror.state().ready, true);
  assert.equal(mirror.unavailableReason(), null);
  assert.equal(mirror.peerOnline('100.64.0.2'), true);
  assert.equal(mirror.peerOnline('100.64.0.3'), undefined);
  // Known, not warming, control synced: answered from memory.
  assert.equal(mirror.warming('100.64.0.2'), undefined);
  assert.equal(mirror.controlSync(1_000), null);
  assert.equal(calls.join(), '');
  // A device the mirror has not heard of is asked about (it may have been approved a moment ago).
  assert.equal(await mirror.warming('100.64.0.9'), true);
  assert.equal(calls.join(), 'warming');
  // A warm-up starting on the primary is seen at the next poll, and waited for through the primary.
  let finish!: (ok: boolean) => void;
  warm.set('100.64.0.2', new Promise<boolean>((r) => (finish = r)).finally(() => warm.delete('100.64.0.2')));
  const seen = Date.now() + 2_000;
  while (mirror.warming('100.64.0.2') === undefined && Date.now() < seen) await new Promise((r) => setTimeout(r, 10));
  const waiting = mirror.warming('100.64.0.2');
  assert.ok(waiting instanceof Promise);
  finish(false);
  assert.equal(await waiting, false);
  assert.deepEqual(await mirror.checkPeer('100.64.0.2', 100), { online: true, liveSession: true });
  synced = false;
  const unsynced = Date.now() + 2_000;
  while (mirror.controlSync(50) === null && Date.now() < unsynced) await new Promise((r) => setTimeout(r, 10));
  await mirror.controlSync(50);
  assert.ok(calls.includes('controlSync'));
  const changes: [string, boolean | undefined][] = [];
  mirror.onPeerChange((ip, o) => changes.push([ip, o]));
  online.set('100.64.0.2', false);
  for (const l of listeners) l('100.64.0.2', false);
  assert.equal(mirror.peerOnline('100.64.0.2'), false);
  assert.deepEqual(changes, [['100.64.0.2', false]]);
  state = { running: false, backendState: 'restarting', selfIps: [], ready: false };
  unavailable = 'tailscaled is restarting';
  const deadline = Date.now() + 2_000;
  while (mirror.unavailableReason() === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(mirror.unavailableReason(), 'tailscaled is restarting');
  assert.equal(mirror.state().backendState, 'restarting');
  const polls = sent.length;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(sent.length, polls, 'nothing is sent while nothing changes');
  publisher.close();
});
