// The device board follows the tailnet ahead of any connection: StatusView announces every change of a peer's online
// state between two status reads (and every peer lost when tailscaled goes), and DeviceStatusFeed turns those into
// board state by address, so the chooser stops handing out a device the tailnet reports offline before any dial fails.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LocalStatus } from '../src/tailnet/localapi.js';
import { StatusView } from '../src/tailnet/status-view.js';
import type { TailnetState, TailnetView } from '../src/tailnet/types.js';
import { DeviceBoard } from '../src/tunnel/device-health.js';
import { DeviceStatusFeed } from '../src/tunnel/device-status.js';
import { DeviceSelector } from '../src/tunnel/select.js';

const clock = { t: 1_000, now() { return this.t; }, schedule: () => () => undefined };

function status(peers: Record<string, boolean>): LocalStatus {
  return {
    BackendState: 'Running',
    Peer: Object.fromEntries(Object.entries(peers).map(([ip, online]) => [`key-${ip}`, { TailscaleIPs: [ip], Online: online }])),
  };
}

describe('StatusView.onPeerChange', () => {
  test('announces peers that appear, change state or vanish; nothing when a read changes nothing', () => {
    const view = new StatusView(clock, async () => undefined);
    const events: string[] = [];
    view.onPeerChange((ip, online) => events.push(`${ip}=${online}`));
    view.apply(status({ '100.64.0.2': true, '100.64.0.3': false }), 1);
    assert.deepEqual(events.splice(0), ['100.64.0.2=true', '100.64.0.3=false']);
    view.apply(status({ '100.64.0.2': true, '100.64.0.3': false }), 2);
    assert.deepEqual(events.splice(0), [], 'no change, no event');
    view.apply(status({ '100.64.0.2': false, '100.64.0.3': true }), 3);
    assert.deepEqual(events.splice(0), ['100.64.0.2=false', '100.64.0.3=true']);
    view.apply(status({ '100.64.0.3': true }), 4);
    assert.deepEqual(events.splice(0), ['100.64.0.2=undefined'], 'gone from the netmap');
    view.apply(status({ '100.64.0.2': true }), 3.5);
    assert.deepEqual(events.splice(0), [], 'an older read that finishes late is dropped');
    view.forget();
    assert.deepEqual(events.splice(0), ['100.64.0.3=undefined'], 'tailscaled gone: nothing is known');
  });
});

/** A tailnet view whose peer changes the test announces. */
class ScriptedTailnet implements TailnetView {
  readonly online = new Map<string, boolean>();
  private listener: ((ip: string, online: boolean | undefined) => void) | undefined;
  state(): TailnetState {
    return { running: true, backendState: 'Running', selfIps: [], ready: true };
  }
  unavailableReason(): string | null {
    return null;
  }
  peerOnline(ip: string): boolean | undefined {
    return this.online.get(ip);
  }
  onPeerChange(listener: (ip: string, online: boolean | undefined) => void): () => void {
    this.listener = listener;
    return () => (this.listener = undefined);
  }
  set(ip: string, online: boolean | undefined): void {
    if (online === undefined) this.online.delete(ip);
    else this.online.set(ip, online);
    this.listener?.(ip, online);
  }
}

describe('DeviceStatusFeed', () => {
  const devices = [
    { id: 1, name: 'a', ip: '100.64.0.11', labels: {} },
    { id: 2, name: 'b', ip: '100.64.0.12', labels: {} },
  ];

  test('a device the tailnet reports offline is no longer chosen, and is again once it is back', () => {
    const tailnet = new ScriptedTailnet();
    tailnet.online.set('100.64.0.11', true);
    tailnet.online.set('100.64.0.12', true);
    const board = new DeviceBoard({ clock });
    const feed = new DeviceStatusFeed(board, tailnet);
    const selector = new DeviceSelector(board, { random: () => 0 });
    for (const d of devices) feed.track(d);
    const set = selector.prepare(devices);
    assert.equal(feed.health(1).reason, 'online', 'tracking reads the state the tailnet has now');

    tailnet.set('100.64.0.11', false);
    for (let i = 0; i < 5; i++) assert.equal((selector.choose(set, { keyId: 1 }) as { id: number }).id, 2);
    assert.deepEqual([feed.health(1).health, feed.health(1).reason], ['down', 'offline']);
    tailnet.set('100.64.0.12', undefined);
    assert.deepEqual([feed.health(2).health, feed.health(2).reason], ['unknown', 'no-status'], 'unknown is not down: still chosen');
    assert.equal((selector.choose(set, { keyId: 1 }) as { id: number }).id, 2);
    tailnet.set('100.64.0.12', false);
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device');
    tailnet.set('100.64.0.11', true);
    assert.equal((selector.choose(set, { keyId: 1 }) as { id: number }).id, 1);
    feed.close();
  });

  test('a device that moves to another address is followed at the new one; a forgotten device is never chosen', () => {
    const tailnet = new ScriptedTailnet();
    const board = new DeviceBoard({ clock });
    const feed = new DeviceStatusFeed(board, tailnet);
    const selector = new DeviceSelector(board);
    feed.track(devices[0]!);
    feed.track({ ...devices[0]!, ip: '100.64.0.99' });
    tailnet.set('100.64.0.11', false);
    assert.notEqual(feed.health(1).reason, 'offline', 'the old address no longer speaks for it');
    tailnet.set('100.64.0.99', false);
    assert.equal(feed.health(1).reason, 'offline');
    const set = selector.prepare([devices[1]!]);
    feed.track(devices[1]!);
    feed.forget(2);
    assert.equal(selector.choose(set, { keyId: 1 }), 'no_device', 'a list prepared before the deletion never hands it out');
    assert.equal(feed.names.has(2), false, 'and it leaves the metrics');
  });

  test('health.since is wall-clock time', () => {
    const board = new DeviceBoard();
    const feed = new DeviceStatusFeed(board, undefined);
    feed.track(devices[0]!);
    assert.ok(Math.abs(feed.health(1).since - Date.now()) < 5_000);
  });
});
