import { pino, type Logger } from 'pino';
import { hashKey, keyTag } from './core/key.js';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: undefined,
    // Belt and braces: secrets are never passed to the logger, but if one ever is under these names it is masked.
    redact: { paths: ['key', 'authKey', 'apiKey', 'token', 'password', '*.key', '*.authKey', '*.apiKey', '*.token', 'req.headers.authorization'], censor: '[redacted]' },
  });
}

/** Short fingerprint of any secret (API key, auth key) for log lines. */
export function secretTag(secret: string): string {
  return keyTag(hashKey(secret));
}
