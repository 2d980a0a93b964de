// The auth contract customers rely on: username = password = key, and the key must be registered.
import { timingSafeEqual } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { hashKey } from '../core/key.js';
import type { KeyRoute, RouteResolver } from './routes.js';

export type AuthOutcome =
  | { ok: true; route: KeyRoute }
  /** Credentials are wrong (password differs, not a key, unknown key). */
  | { ok: false; error: false }
  /** The key store could not answer; not the client's fault. */
  | { ok: false; error: true; cause: unknown };

const REJECTED: AuthOutcome = Object.freeze({ ok: false, error: false });

/**
 * Checks raw username/password bytes. Both come from the client, so their lengths are no secret; the
 * comparison itself is still constant-time. The key is hashed once here, and the resolver looks the
 * route up by that hash: the store, the cache and revocation all work on key hashes.
 */
export async function authenticate(resolver: RouteResolver, username: Buffer, password: Buffer): Promise<AuthOutcome> {
  if (username.length === 0 || username.length !== password.length || !timingSafeEqual(username, password)) return REJECTED;
  // Keys are registered as JSON strings, so a key that is not valid UTF-8 cannot exist, and for a valid one
  // these bytes are the key's UTF-8 encoding, which is what hashKey hashes.
  if (!isUtf8(username)) return REJECTED;
  try {
    const route = await resolver.resolveHash(hashKey(username));
    return route === null ? REJECTED : { ok: true, route };
  } catch (cause) {
    return { ok: false, error: true, cause };
  }
}
