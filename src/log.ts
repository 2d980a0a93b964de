import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { hashKey, keyTag } from './core/key.js';

export type { Logger };

export interface LogOutput {
  /**
   * Readable lines instead of JSON lines: pino-pretty as a synchronous stream in this thread rather than in a transport
   * worker, so that what is written to stdout directly after a log call (serve's newcomer lines) comes after it, and
   * a process.exit loses nothing.
   */
  pretty: boolean;
  /** With pretty: colour them. */
  colour?: boolean;
}

export function createLogger(level: string, output: LogOutput = { pretty: false }): Logger {
  const options = {
    level,
    base: undefined,
    // Belt and braces: secrets are never passed to the logger, but if one ever is under these names it is masked.
    redact: { paths: ['key', 'authKey', 'apiKey', 'token', 'password', '*.key', '*.authKey', '*.apiKey', '*.token', 'req.headers.authorization'], censor: '[redacted]' },
  };
  if (!output.pretty) return pino(options);
  return pino(options, PinoPretty({ destination: 1, sync: true, colorize: output.colour ?? false, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
}

/** Short fingerprint of any secret (API key, auth key) for log lines. */
export function secretTag(secret: string): string {
  return keyTag(hashKey(secret));
}
