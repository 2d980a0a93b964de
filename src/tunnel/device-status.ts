// Keeps the device board in step with the tailnet, ahead of any connection: every device the gateway knows is tracked
// by its tailnet address, and each change tailscaled's status reads show (a peer coming online, going offline, or
// vanishing with a tailscaled restart) reaches the board at once, so the chooser stops handing out a device the tailnet
// already reports gone instead of learning it from a failed dial. Also what the API and the metrics read a device's
// live state from.
import type { TailnetView } from '../tailnet/types.js';
import type { DeviceBoard, HealthView } from './device-health.js';

/** What tracking a device needs to know of it. */
export interface TrackedDevice {
  readonly id: number;
  /** Shown in metrics labels; the id in decimal when the device has no name. */
  readonly name: string;
  readonly ip: string;
}

export class DeviceStatusFeed {
  /** Device ids by tailnet address (a re-registered address can briefly belong to two devices). */
  private readonly byIp = new Map<string, Set<number>>();
  private readonly ipOf = new Map<number, string>();
  readonly names = new Map<number, string>();
  private readonly unwatch: (() => void) | undefined;

  constructor(
    readonly board: DeviceBoard,
    private readonly tailnet: TailnetView | undefined,
  ) {
    this.unwatch = tailnet?.onPeerChange?.((ip, online) => this.peerChanged(ip, online));
  }

  /** Starts or updates tracking of a device: its address, its name, and its online state as the tailnet has it now. */
  track(d: TrackedDevice): void {
    this.names.set(d.id, d.name);
    const previous = this.ipOf.get(d.id);
    if (previous !== d.ip) {
      if (previous !== undefined) this.untrackIp(d.id, previous);
      this.ipOf.set(d.id, d.ip);
      let ids = this.byIp.get(d.ip);
      if (ids === undefined) this.byIp.set(d.ip, (ids = new Set()));
      ids.add(d.id);
    }
    this.board.setOnline(d.id, this.tailnet?.peerOnline(d.ip));
  }

  /** A deleted device: no longer tracked, and never handed out again (DeviceBoard.forget). */
  forget(id: number): void {
    const ip = this.ipOf.get(id);
    if (ip !== undefined) this.untrackIp(id, ip);
    this.ipOf.delete(id);
    this.names.delete(id);
    this.board.forget(id);
  }

  /** The device's live health (DeviceBoard.view) with `since` as wall-clock milliseconds. */
  health(id: number): HealthView {
    const v = this.board.view(id);
    v.since = Date.now() - (this.board.clock.now() - v.since);
    return v;
  }

  close(): void {
    this.unwatch?.();
  }

  private untrackIp(id: number, ip: string): void {
    const ids = this.byIp.get(ip);
    if (ids === undefined) return;
    ids.delete(id);
    if (ids.size === 0) this.byIp.delete(ip);
  }

  private peerChanged(ip: string, online: boolean | undefined): void {
    const ids = this.byIp.get(ip);
    if (ids === undefined) return;
    for (const id of ids) this.board.setOnline(id, online);
  }
}
