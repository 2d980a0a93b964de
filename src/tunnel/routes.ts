// What a key resolves to on the data path: one device (a device key, the fast path every key had before pools), or
// a prepared set of devices to choose from per connection (a pool key).
import type { DeviceRoute } from '../core/route.js';
import type { KeyGate } from './limits.js';
import type { DeviceSet, Selection } from './select.js';

/**
 * A device as a key's route: what the dial needs, plus what the device chooser and the user-name filters read. A device
 * key resolves to one; a pool key's set is made of them.
 */
export interface RoutedDevice extends DeviceRoute {
  /** The key's id (a pool's members carry their pool key's). */
  readonly keyId: number;
  /** The key's limits on this gateway; null for a key without any (nothing is checked or counted then). */
  readonly gate: KeyGate | null;
  readonly id: number;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface PoolRoute {
  readonly keyId: number;
  readonly keyHash: string;
  readonly gate: KeyGate | null;
  /** The pool's enabled devices, prepared for choosing (empty: the key is valid but has nowhere to go). */
  readonly set: DeviceSet<RoutedDevice>;
  /** The selection of a connection whose user name has no parameters: made once per key, not per connection. */
  readonly plain: Selection;
}

export type KeyRoute = RoutedDevice | PoolRoute;

export function isPoolRoute(route: KeyRoute): route is PoolRoute {
  return (route as PoolRoute).set !== undefined;
}

/** Resolves a proxy key, given as its hash (hashKey(key)), to where it may egress. Returns null for unknown keys. */
export interface RouteResolver {
  resolveHash(keyHash: string): Promise<KeyRoute | null>;
  /** The answer when it is at hand now (null: not registered), undefined otherwise; absent: always ask resolveHash(). */
  cached?(keyHash: string): KeyRoute | null | undefined;
}
