import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: undefined,
    // Belt and braces: secrets are never passed to the logger, but if one ever is under these names it is masked.
    redact: { paths: ['key', 'authKey', 'apiKey', 'token', 'password', '*.key', '*.authKey', '*.apiKey', '*.token', 'req.headers.authorization'], censor: '[redacted]' },
  });
}

/**
 * SHA-256 of a proxy key's UTF-8 bytes, hex. This is what the store keeps and what logs and operators see a prefix
 * of. A Buffer is taken as those bytes already (the listeners' credentials, checked to be UTF-8).
 */
export function hashKey(key: string | Buffer): string {
  const hash = createHash('sha256');
  if (typeof key === 'string') hash.update(key, 'utf8');
  else hash.update(key);
  return hash.digest('hex');
}

/** The short form of a key hash shown to operators and written to logs. */
export function keyTag(keyHash: string): string {
  return keyHash.slice(0, 10);
}

/** Short fingerprint of any secret (API key, auth key) for log lines. */
export function secretTag(secret: string): string {
  return keyTag(hashKey(secret));
}
