// The identity of a proxy key. The store keeps only this hash, the key cache and revocation work on it, and
// operators and logs see its prefix.
import { hash } from 'node:crypto';

/**
 * SHA-256 of a proxy key's UTF-8 bytes, hex. A Buffer is taken as those bytes already (the listeners' credentials,
 * checked to be UTF-8). One-shot crypto.hash: every tunnel hashes its key, and it makes no Hash object.
 */
export function hashKey(key: string | Buffer): string {
  return hash('sha256', key, 'hex');
}

/** The short form of a key hash shown to operators (`keyPrefix`) and written to logs. */
export function keyTag(keyHash: string): string {
  return keyHash.slice(0, 10);
}
