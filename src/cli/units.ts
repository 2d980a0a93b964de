// Sizes, rates and times as operators type and read them: "10GiB", "1MB/s", "24h", an ISO time. Option parsers throw
// commander's InvalidArgumentError, so a bad value is a usage error (exit 2) that says what was expected.
import { InvalidArgumentError } from 'commander';
import type { QuotaPeriod } from '../store/types.js';

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)$/i;
const POWERS = ['', 'k', 'm', 'g', 't', 'p'];

/** "1536", "10MiB", "1.5GB", "64k": k/M/G/T/P (with or without B) are powers of 1000, Ki/Mi/Gi/Ti/Pi powers of 1024. */
export function parseBytes(text: string): number {
  const m = SIZE.exec(text.trim());
  if (m === null || (m[3] !== '' && m[2] === '')) {
    throw new InvalidArgumentError('expected a size such as 1048576, 512KiB, 10MiB, 1GB or 1.5GiB');
  }
  const power = POWERS.indexOf(m[2]!.toLowerCase());
  const bytes = Math.round(Number(m[1]) * (m[3] === '' ? 1000 : 1024) ** power);
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError('too large');
  return bytes;
}

/** A bandwidth: a size per second, the "/s" optional ("4MiB/s", "4MiB"). */
export function parseRate(text: string): number {
  return parseBytes(text.replace(/\/s(ec)?$/i, ''));
}

/** "10GiB/month", "500MB/day", "1TB/total". The period is required: none would be a guess between month and total. */
export function parseQuota(text: string): { bytes: number; period: QuotaPeriod } {
  const m = /^(.+)\/(day|month|total)$/i.exec(text.trim());
  if (m === null) throw new InvalidArgumentError('expected a size and a period: 10GiB/month, 500MB/day or 1TB/total');
  return { bytes: parseBytes(m[1]!), period: m[2]!.toLowerCase() as QuotaPeriod };
}

const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB", 10737418240 → "10 GiB": powers of 1024, at most one decimal. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < BINARY.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = unit === 0 ? String(value) : value.toFixed(1).replace(/\.0$/, '');
  return `${shown} ${BINARY[unit]}`;
}

const DURATION = /^(\d+(?:\.\d+)?)(s|m|h|d|w)$/i;
const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "90s", "30m", "24h", "7d", "2w" in milliseconds, or undefined when the text is not a duration. */
function durationMs(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  return m === null ? undefined : Number(m[1]) * UNIT_MS[m[2]!.toLowerCase()]!;
}

/**
 * A point in time as an ISO string: "now", a duration counted from now (back for `ago`, ahead for `ahead`), or an
 * ISO 8601 time ("2026-12-01", "2026-12-01T12:00:00Z").
 */
export function instant(direction: 'ago' | 'ahead', now: () => number = Date.now): (text: string) => string {
  return (text) => {
    if (text.trim().toLowerCase() === 'now') return new Date(now()).toISOString();
    const ms = durationMs(text);
    if (ms !== undefined) return new Date(now() + (direction === 'ago' ? -ms : ms)).toISOString();
    if (!/^\d{4}-\d{2}-\d{2}/.test(text.trim()) || Number.isNaN(Date.parse(text))) {
      throw new InvalidArgumentError(`expected a duration (30m, 24h, 7d, 2w${direction === 'ago' ? ' ago' : ' from now'}), "now" or an ISO time (2026-12-01T12:00:00Z)`);
    }
    return new Date(Date.parse(text)).toISOString();
  };
}

/** A time as tables show it: UTC to the minute ("2026-12-01 12:00Z"); a dash for none. */
export function formatTime(iso: string | null | undefined): string {
  if (iso === null || iso === undefined) return '-';
  return `${new Date(iso).toISOString().slice(0, 16).replace('T', ' ')}Z`;
}

/** An option value that must be a whole number within bounds. */
export function wholeNumber(min: number, max: number): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    return n;
  };
}

/** An option value that must be a number above zero (fractions allowed). */
export function positiveNumber(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number above 0');
  return n;
}

/** A repeatable option's values, in order. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** "k=v" (the value may hold '='); for labels and selectors. */
export function labelPair(text: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('expected name=value');
  return [text.slice(0, at), text.slice(at + 1)];
}

/** "k=v,k2=v2" or repeated: every pair into one map. */
export function labelMap(texts: readonly string[]): Record<string, string> {
  const map: Record<string, string> = {};
  for (const text of texts) {
    for (const part of text.split(',')) {
      if (part.trim() === '') continue;
      const [k, v] = labelPair(part.trim());
      map[k] = v;
    }
  }
  return map;
}
