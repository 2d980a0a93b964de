import type { DeviceRoute } from '../../src/core/route.js';
import { isPoolRoute, type KeyRoute } from '../../src/tunnel/routes.js';

/** The route of a key that targets one device (what these tests register); a pool route here is a test failure. */
export async function deviceOf(route: Promise<KeyRoute | null> | KeyRoute | null): Promise<DeviceRoute | null> {
  const r = await route;
  if (r !== null && isPoolRoute(r)) throw new Error(`key ${r.keyId} resolved to a pool, where a device was expected`);
  return r;
}
