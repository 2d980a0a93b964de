// The auth contract customers rely on: the password is the key, the user name is the key optionally followed by
// `-name-value` parameters (protocol/proxy-user.ts), and the key must be registered.
import { hashKey } from '../core/key.js';
import { parseProxyUser, type ProxyUserParams } from '../protocol/proxy-user.js';
import type { KeyRoute, RouteResolver } from './routes.js';

export type AuthOutcome =
  | { ok: true; route: KeyRoute; params: ProxyUserParams }
  /**
   * Credentials are wrong (password differs, not a key, unknown key). `parameter`: the key prefix was right and the
   * parameters after it were not; a fixed text naming the parameter, never the client's bytes.
   */
  | { ok: false; error: false; parameter: string | undefined }
  /** The key store could not answer; not the client's fault. */
  | { ok: false; error: true; cause: unknown };

const REJECTED: AuthOutcome = Object.freeze({ ok: false, error: false, parameter: undefined });

/**
 * Checks raw username/password bytes. The parameters are judged before the key is looked up: the verdict depends only
 * on what the client sent, so it tells nothing about whether the key exists. The key is hashed once here, and the
 * resolver looks the route up by that hash: the store, the cache and revocation all work on key hashes. A key the
 * resolver's cache knows is answered at once, not through a promise: that is nearly every tunnel.
 */
export function authenticate(resolver: RouteResolver, username: Buffer, password: Buffer): AuthOutcome | Promise<AuthOutcome> {
  const user = parseProxyUser(username, password);
  if (!user.ok) return user.reason === 'auth' ? REJECTED : { ok: false, error: false, parameter: user.detail };
  // parseProxyUser checked that the key is UTF-8, which is what hashKey hashes: keys are registered as JSON strings.
  const keyHash = hashKey(user.key);
  const known = resolver.cached?.(keyHash);
  if (known !== undefined) return known === null ? REJECTED : { ok: true, route: known, params: user.params };
  return lookUp(resolver, keyHash, user.params);
}

async function lookUp(resolver: RouteResolver, keyHash: string, params: ProxyUserParams): Promise<AuthOutcome> {
  try {
    const route = await resolver.resolveHash(keyHash);
    return route === null ? REJECTED : { ok: true, route, params };
  } catch (cause) {
    return { ok: false, error: true, cause };
  }
}
