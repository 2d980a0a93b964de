// One front end's view of the pipeline's parts, with its metric children resolved once instead of per tunnel.
import { keyTag } from '../core/key.js';
import type { DialError } from '../core/failure.js';
import type { DeviceRoute } from '../core/route.js';
import type { Logger } from '../log.js';
import type { DeviceBoard } from './device-health.js';
import type { ListenerName, Metrics } from './metrics.js';
import type { TunnelRegistry } from './registry.js';
import type { RoutedDevice } from './routes.js';
import type { UsageRecorder } from './usage.js';
import type { Timeouts } from './types.js';

/** The parts of the pipeline every stage after authentication uses. */
export interface ListenerParts {
  tunnels: TunnelRegistry;
  metrics: Metrics;
  log: Logger;
  timeouts: Timeouts;
  /** Every device's health and load; absent for a gateway that routes device keys only. */
  board?: DeviceBoard | undefined;
  /** Usage accounting; absent: nothing is accounted. */
  usage?: UsageRecorder | undefined;
}

export class ListenerContext {
  readonly tunnelsOpen;
  readonly tunnelsTotal;
  readonly bytesUp;
  readonly bytesDown;
  readonly setupSeconds;
  readonly authFailures;
  readonly authThrottled;
  readonly debug: boolean;

  constructor(
    readonly parts: ListenerParts,
    readonly listener: ListenerName,
  ) {
    const m = parts.metrics;
    this.tunnelsOpen = m.tunnelsOpen.labels(listener);
    this.tunnelsTotal = m.tunnelsTotal.labels(listener);
    this.bytesUp = m.bytes.labels(listener, 'upstream');
    this.bytesDown = m.bytes.labels(listener, 'downstream');
    this.setupSeconds = m.setupSeconds.labels(listener);
    this.authFailures = m.authFailures.labels(listener);
    this.authThrottled = m.authThrottled.labels(listener);
    this.debug = parts.log.isLevelEnabled('debug');
  }

  /**
   * A connection through the device could not be made. Logged at info with the reason's detail, because the client
   * only ever sees the short label and an operator asked "why did my customer get a 502" needs the rest.
   */
  dialFailed(route: RoutedDevice, err: DialError): void {
    this.parts.metrics.dialError(err.reason);
    this.parts.usage?.failed(route.keyId, route.id);
    this.failed(route, err);
  }

  /** A failure after the connection to the device was made: logged like a dial failure, not counted as one. */
  failed(route: DeviceRoute, err: DialError): void {
    this.parts.log.info({ listener: this.listener, keyTag: keyTag(route.keyHash), node: route.nodeId, device: route.ip, reason: err.reason, err: err.message }, 'connection through the device failed');
  }
}
