// The auth contract customers rely on: username = password = key, and the key must be registered.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type { DeviceRoute, RouteResolver } from '../routing/types.js';

export type AuthOutcome =
  | { ok: true; route: DeviceRoute }
  /** Credentials are wrong (password differs, not a key, unknown key). */
  | { ok: false; error: false }
  /** The key store could not answer; not the client's fault. */
  | { ok: false; error: true; cause: unknown };

const REJECTED: AuthOutcome = Object.freeze({ ok: false, error: false });

function digest(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

/**
 * Checks raw username/password bytes. The equality test runs on fixed-length digests so its timing says
 * nothing about how much of a guess was right.
 */
export async function authenticate(resolver: RouteResolver, username: Buffer, password: Buffer): Promise<AuthOutcome> {
  if (!timingSafeEqual(digest(username), digest(password))) return REJECTED;
  // Keys are registered as JSON strings, so a key that is not valid UTF-8 cannot exist.
  if (username.length === 0 || !isUtf8(username)) return REJECTED;
  try {
    const route = await resolver.resolve(username.toString('utf8'));
    return route === null ? REJECTED : { ok: true, route };
  } catch (cause) {
    return { ok: false, error: true, cause };
  }
}
