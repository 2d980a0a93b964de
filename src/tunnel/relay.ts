// The byte relay between a client and the device: the hot path the benchmarks measure.
// - No closures per tunnel: the Tunnel lives on both sockets under a symbol, and every handler (data, drain, end,
//   error, close, timeout) is a shared module-level function that finds the tunnel and the peer through `this`.
//   Two pipe() calls would allocate a set of closures and listener arrays per direction and tunnel; the idle
//   memory per tunnel this saves is measured in bench/README.md.
// - The handlers do for one destination what pipe() does: write, pause the source when write() says the peer's
//   buffer is over its high-water mark, resume it on the peer's 'drain', end the peer's writable side on 'end'.
// - Half-close: the listeners accept with allowHalfOpen and the direct dialer connects with it, so a FIN from one
//   side only ends the other side's writable half; the opposite direction keeps flowing until it ends too. (A device
//   socket that is not half-open, like the tailscaled dialers', closes on its FIN instead.)
// - Bytes are counted once, at close, from the sockets' own counters instead of per chunk; usage accounting reads the
//   same counters of open tunnels at each flush (the Tunnel is its meter), so a long tunnel is billed while it runs.
// - A key with a bandwidth cap (limits.ts) gets the shaped handlers instead: the same, plus taking the bytes just
//   written from the key's bucket of that direction, and when the bucket is in debt pausing the source until the
//   bucket's one timer wakes it. A key without limits never reaches them.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { keyTag } from '../core/key.js';
import type { DeviceState } from './device-health.js';
import type { Direction, KeyGate, Metered } from './limits.js';
import type { ListenerContext } from './listener.js';
import type { RoutedDevice } from './routes.js';
import type { UsageMeter, UsageRecorder } from './usage.js';
import { kStage } from '../core/socket-stage.js';

type RelaySocket = Socket & { [kStage]?: Tunnel };

class Tunnel implements UsageMeter, Metered {
  /** Sockets still open; the tunnel is finished when both have closed. */
  openSockets = 2;
  /** Why it ended, for the log line: first cause wins. */
  ending: string | undefined;
  /** Client-side bytes already reported to usage accounting, each way. */
  usageUp = 0;
  usageDown = 0;
  /** Whether it holds a place in its gate (admitted by it, not adopted when its key got limits). */
  holdsSlot = false;
  /** Paused by the key's bucket of that direction (not by backpressure). */
  heldDown = false;
  heldUp = false;

  constructor(
    readonly ctx: ListenerContext,
    readonly route: RoutedDevice,
    readonly client: Socket,
    readonly upstream: Socket,
    readonly upBase: number,
    readonly downBase: number,
    readonly openedAt: number,
    /** The pool device carrying it, whose open-tunnel count it holds; undefined for a device key. */
    readonly device: DeviceState | undefined,
    /** Its key's limits; null for a key without any. */
    public gate: KeyGate | null,
  ) {}

  reportUsage(recorder: UsageRecorder): void {
    const { client } = this;
    const up = Math.max(0, client.bytesRead - this.upBase - this.usageUp);
    // What was handed to the system: bytes still in the socket's own buffer are dropped if the tunnel is cut.
    const down = Math.max(0, client.bytesWritten - client.writableLength - this.downBase - this.usageDown);
    this.usageUp += up;
    this.usageDown += down;
    recorder.bytes(this.route.keyId, this.route.id, up, down);
  }

  finish(): void {
    const { ctx, client } = this;
    ctx.parts.usage?.end(this);
    const up = Math.max(0, client.bytesRead - this.upBase);
    const down = Math.max(0, client.bytesWritten - this.downBase);
    const gate = this.gate;
    if (gate !== null) {
      gate.unfollow(this);
      gate.release(this.holdsSlot);
    }
    ctx.bytesUp.inc(up);
    ctx.bytesDown.inc(down);
    ctx.tunnelsOpen.dec();
    ctx.parts.tunnels.remove(this.route.keyHash, client);
    if (this.device !== undefined) ctx.parts.board?.tunnelClosed(this.device);
    if (ctx.debug) {
      ctx.parts.log.debug(
        { listener: ctx.listener, keyTag: keyTag(this.route.keyHash), node: this.route.nodeId, up, down, ms: Math.round(performance.now() - this.openedAt), end: this.ending ?? 'closed' },
        'tunnel closed',
      );
    }
  }

  cut(why: string): void {
    this.ending ??= why;
    this.client.destroy();
    this.upstream.destroy();
  }

  wake(direction: Direction): void {
    if (direction === 'down') {
      this.heldDown = false;
      if (!this.client.writableNeedDrain) this.upstream.resume();
    } else {
      this.heldUp = false;
      if (!this.upstream.writableNeedDrain) this.client.resume();
    }
  }
}

function peerOf(t: Tunnel, s: Socket): Socket {
  return s === t.client ? t.upstream : t.client;
}

// Backpressure as pipe() does it: the source waits while the peer holds more than its high-water mark.
function onRelayData(this: RelaySocket, chunk: Buffer): void {
  const t = this[kStage]!;
  if (!peerOf(t, this).write(chunk)) this.pause();
}

function onRelayDrain(this: RelaySocket): void {
  const t = this[kStage]!;
  peerOf(t, this).resume();
}

// The same for a key with a limit: the bytes just written are taken from the key's bucket of their direction.
function onShapedData(this: RelaySocket, chunk: Buffer): void {
  const t = this[kStage]!;
  const up = this === t.client;
  const ok = (up ? t.upstream : t.client).write(chunk);
  const bucket = up ? t.gate!.up : t.gate!.down;
  if (bucket !== null && !bucket.take(chunk.length)) {
    if (up) t.heldUp = true;
    else t.heldDown = true;
    this.pause();
    bucket.hold(t);
  } else if (!ok) this.pause();
}

// A source its bucket holds stays paused when its peer drains; the bucket's timer resumes it.
function onShapedDrain(this: RelaySocket): void {
  const t = this[kStage]!;
  if (this === t.client) {
    if (!t.heldDown) t.upstream.resume();
  } else if (!t.heldUp) t.client.resume();
}

// One direction is over: pass the FIN on. The peer flushes what it holds first, and the other direction
// keeps flowing.
function onRelayEnd(this: RelaySocket): void {
  const t = this[kStage]!;
  peerOf(t, this).end();
}

function onRelayError(this: RelaySocket, err: NodeJS.ErrnoException): void {
  const t = this[kStage]!;
  t.ending ??= `${this === t.client ? 'client' : 'device'} ${err.code ?? err.message}`;
  t.client.destroy();
  t.upstream.destroy();
}

function onRelayTimeout(this: RelaySocket): void {
  const t = this[kStage]!;
  t.ending ??= 'idle timeout';
  t.client.destroy();
  t.upstream.destroy();
}

function onRelayClose(this: RelaySocket): void {
  const t = this[kStage]!;
  // A clean close (both directions ended) means onRelayEnd already ended the peer, which closes once it
  // has flushed; cutting it now would drop its buffered bytes. Anything else (reset, revocation, shutdown)
  // takes the peer down too.
  if (!(this.readableEnded && this.writableFinished)) {
    t.ending ??= `${this === t.client ? 'client' : 'device'} closed`;
    peerOf(t, this).destroy();
  }
  if (--t.openSockets === 0) t.finish();
}

/** `idleMs` null: no idle timer on this socket (the tunnel's one is on the client socket). */
function attach(s: RelaySocket, t: Tunnel, idleMs: number | null): void {
  s[kStage] = t;
  s.on('error', onRelayError);
  s.on('close', onRelayClose);
  s.on('data', t.gate === null ? onRelayData : onShapedData);
  s.on('drain', t.gate === null ? onRelayDrain : onShapedDrain);
  s.on('end', onRelayEnd);
  if (idleMs === null) return;
  s.on('timeout', onRelayTimeout);
  // The HTTP listener's server has armed this very timeout on the client already (server.timeout): setting it again
  // would only replace its timer with a new one.
  if (s.timeout !== idleMs) s.setTimeout(idleMs);
}

function startFlowing(source: Socket, dest: Socket): void {
  // Its FIN may have been read before the relay existed (a client that sends CONNECT, data and FIN at once):
  // 'end' has been emitted already and will not come again.
  if (source.readableEnded) dest.end();
  // A destination already over its high-water mark (a large early write) resumes the source on 'drain'.
  else if (!dest.writableNeedDrain) source.resume();
}

/**
 * Relays between `client` and `upstream` until both are closed. `pending` holds bytes the client sent
 * before the tunnel existed (after its CONNECT); they go to the device first. `setupStartedAt` is
 * performance.now() when the client's handshake completed. The caller must have removed its own
 * 'data' listeners, written its success reply and registered the client under its key (tunnels.add).
 * If either socket died during setup, both are destroyed and nothing is counted.
 */
export function startRelay(
  ctx: ListenerContext,
  route: RoutedDevice,
  client: Socket,
  upstream: Socket,
  pending: Buffer | null,
  setupStartedAt: number,
  device?: DeviceState,
  gate: KeyGate | null = null,
): void {
  if (client.destroyed || upstream.destroyed) {
    ctx.parts.tunnels.remove(route.keyHash, client);
    gate?.release();
    client.destroy();
    upstream.destroy();
    return;
  }
  const now = performance.now();
  const pendingBytes = pending === null ? 0 : pending.length;
  // bytesRead counts what the socket has taken from the kernel, including what it read ahead into its buffer while
  // paused for the set-up: those bytes are still to be relayed, like `pending`, so they count too.
  const t = new Tunnel(ctx, route, client, upstream, client.bytesRead - pendingBytes - client.readableLength, client.bytesWritten, now, device, gate);
  if (gate !== null) {
    t.holdsSlot = true;
    gate.follow(t);
  }
  if (device !== undefined) ctx.parts.board?.tunnelOpened(device);
  const idleMs = ctx.parts.timeouts.idleMs;
  // One idle timer per tunnel: every byte relayed either way is read from or written to the client socket, so its
  // timer sees all of the tunnel's activity, and a paused direction pauses with both sockets idle.
  attach(client, t, idleMs);
  attach(upstream, t, null);
  ctx.tunnelsOpen.inc();
  ctx.tunnelsTotal.inc();
  const usage = ctx.parts.usage;
  if (usage !== undefined) {
    usage.opened(route.keyId, route.id);
    usage.add(t);
  }
  ctx.setupSeconds.observe((now - setupStartedAt) / 1000);
  if (pendingBytes > 0) upstream.write(pending!);
  // No byte is emitted before the handlers above are in place: the listeners paused the client, and the device
  // socket comes from the handshake driver not flowing yet, so it starts on a later tick at the earliest.
  startFlowing(client, upstream);
  startFlowing(upstream, client);
}

/**
 * Puts open tunnels of a key that had no limits when they started under the key's new gate: a bandwidth cap set now
 * shapes them too, and the quota counts and cuts them. They hold no place in maxTunnels (they were admitted without).
 */
export function adoptTunnels(clients: Iterable<Socket>, gate: KeyGate): void {
  for (const client of clients) {
    // A client still being set up holds another stage's state in the slot.
    const t = (client as RelaySocket)[kStage];
    if (!(t instanceof Tunnel) || t.gate !== null || t.openSockets < 2) continue;
    t.gate = gate;
    for (const s of [t.client, t.upstream]) {
      s.off('data', onRelayData);
      s.on('data', onShapedData);
      s.off('drain', onRelayDrain);
      s.on('drain', onShapedDrain);
    }
    gate.follow(t);
  }
}
