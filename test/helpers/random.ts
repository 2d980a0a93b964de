// Seeded randomness for the property tests: a failure can be replayed from its seed, and the generators write
// addresses in every text form a client may use.

/** Small deterministic PRNG (mulberry32), values in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function int(r: () => number, below: number): number {
  return Math.floor(r() * below);
}

export function pick<T>(r: () => number, items: readonly T[]): T {
  return items[int(r, items.length)]!;
}

export function randomIPv4(r: () => number): string {
  return [int(r, 256), int(r, 256), int(r, 256), int(r, 256)].join('.');
}

/**
 * An IPv6 literal as a client may write it: groups with or without leading zeros, either case, `::` over any run
 * of zero groups (not only the longest), and sometimes the last 32 bits as a dotted quad. Zero groups are common,
 * so runs and their compression are exercised.
 */
export function randomIPv6(r: () => number): string {
  const groups = Array.from({ length: 8 }, () => (r() < 0.4 ? 0 : r() < 0.5 ? int(r, 0x100) : int(r, 0x10000)));
  const dotted = r() < 0.25;
  if (dotted && r() < 0.6) {
    // IPv4-mapped (RFC 4291 section 2.5.5.2) or IPv4-compatible: zeros, then ffff or 0, then an IPv4 address.
    groups.fill(0, 0, 5);
    groups[5] = r() < 0.8 ? 0xffff : 0;
  }
  const upper = r() < 0.2;
  const text = (g: number) => {
    const h = r() < 0.15 ? g.toString(16).padStart(4, '0') : g.toString(16);
    return upper ? h.toUpperCase() : h;
  };
  const words = groups.slice(0, dotted ? 6 : 8).map(text);
  if (dotted) words.push(`${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`);
  // Collapse a random run of zero groups (whole groups only; the dotted tail is never part of one).
  const runs: [number, number][] = [];
  for (let i = 0; i < (dotted ? 6 : 8); i++) {
    if (groups[i] !== 0) continue;
    let j = i;
    while (j < (dotted ? 6 : 8) && groups[j] === 0) j++;
    runs.push([i, j]);
    i = j;
  }
  if (runs.length === 0 || r() < 0.2) return words.join(':');
  const [from, to] = pick(r, runs);
  const start = from + int(r, to - from);
  const end = start + 1 + int(r, to - start);
  return `${words.slice(0, start).join(':')}::${words.slice(end).join(':')}`;
}

const LABEL = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_';

/** A DNS name as clients send them: 1-4 labels, sometimes a root dot. */
export function randomHostname(r: () => number): string {
  const labels = Array.from({ length: 1 + int(r, 4) }, () => {
    let label = pick(r, LABEL.slice(0, 62).split(''));
    for (let n = int(r, 12); n > 0; n--) label += pick(r, LABEL.split(''));
    return label.endsWith('-') ? `${label}x` : label;
  });
  return labels.join('.') + (r() < 0.1 ? '.' : '');
}
