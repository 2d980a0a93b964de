// IP literals as text and as bytes, without node:net. Validation and encoding share this one parser, so a host that
// passes as an address is always encoded as the address it names.

const DOT = 0x2e;
const COLON = 0x3a;
const PERCENT = 0x25;

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** A zone identifier (RFC 4007 section 11): letters, digits, `-`, `.`, `:`, at least one. */
function isZone(text: string, from: number): boolean {
  if (from >= text.length) return false;
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === DOT || c === COLON;
    if (!ok) return false;
  }
  return true;
}

/**
 * Dotted quad in text[from, to): four decimal parts 0-255 without leading zeros. Writes the 4 bytes at out[at] when
 * out is given (possibly partly, when it returns false).
 */
function parseIPv4(text: string, from: number, to: number, out: Uint8Array | null, at: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = from; i <= to; i++) {
    const c = i < to ? text.charCodeAt(i) : DOT;
    if (c === DOT) {
      if (digits === 0 || part === 4) return false;
      if (out !== null) out[at + part] = value;
      part++;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && value === 0) return false;
      value = value * 10 + (c - 0x30);
      if (value > 255) return false;
      digits++;
    } else {
      return false;
    }
  }
  return part === 4;
}

/**
 * RFC 4291 section 2.2 text: eight groups of 1-4 hex digits, one `::` for one or more zero groups, the last 32 bits
 * optionally as a dotted quad (`::ffff:1.2.3.4` is 0:0:0:0:0:ffff:0102:0304). A `%zone` suffix names an interface of
 * the host reading the text and is not part of the 16 bytes. Writes them at out[at] when out is given.
 */
function parseIPv6(text: string, out: Uint8Array | null, at: number): boolean {
  let end = text.indexOf('%');
  if (end < 0) end = text.length;
  else if (!isZone(text, end + 1)) return false;
  let groups = 0;
  let gap = -1;
  let i = 0;
  if (end >= 2 && text.charCodeAt(0) === COLON) {
    if (text.charCodeAt(1) !== COLON) return false;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    let value = 0;
    let j = i;
    for (let h: number; j < end && (h = hexDigit(text.charCodeAt(j))) >= 0; j++) value = value * 16 + h;
    if (j < end && text.charCodeAt(j) === DOT) {
      if (groups > 6 || !parseIPv4(text, i, end, out, at + groups * 2)) return false;
      groups += 2;
      break;
    }
    if (j === i || j - i > 4 || groups === 8) return false;
    if (out !== null) {
      out[at + groups * 2] = value >> 8;
      out[at + groups * 2 + 1] = value & 0xff;
    }
    groups++;
    i = j;
    if (i === end) break;
    if (text.charCodeAt(i) !== COLON || ++i === end) return false;
    if (text.charCodeAt(i) === COLON) {
      if (gap >= 0) return false;
      gap = groups;
      i++;
    }
  }
  if (gap < 0) return groups === 8;
  if (groups > 7) return false;
  if (out !== null) {
    const tail = (groups - gap) * 2;
    out.copyWithin(at + 16 - tail, at + gap * 2, at + groups * 2);
    out.fill(0, at + gap * 2, at + 16 - tail);
  }
  return true;
}

/** 4 for an IPv4 dotted quad, 6 for an IPv6 literal (a %zone allowed), 0 for anything else; as node:net's isIP. */
export function ipFamily(text: string): 0 | 4 | 6 {
  if (text.includes(':')) return parseIPv6(text, null, 0) ? 6 : 0;
  return parseIPv4(text, 0, text.length, null, 0) ? 4 : 0;
}

/** Writes the 4 bytes of an IPv4 literal at out[at]; false (out unspecified) when text is not one. */
export function writeIPv4(text: string, out: Uint8Array, at: number): boolean {
  return parseIPv4(text, 0, text.length, out, at);
}

/** Writes the 16 bytes of an IPv6 literal at out[at], without its zone; false (out unspecified) when text is not one. */
export function writeIPv6(text: string, out: Uint8Array, at: number): boolean {
  return parseIPv6(text, out, at);
}

/**
 * Text form of the 16-byte IPv6 address at buf[offset]: lower-case hex, leading zeros dropped, the first longest run
 * of two or more zero groups as `::` (RFC 5952 section 4). The last 32 bits stay hex, also for IPv4-mapped
 * addresses (`::ffff:102:304`), as the WHATWG URL serializer writes them.
 */
export function formatIPv6(buf: Uint8Array, offset: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((buf[offset + i * 2]! << 8) | buf[offset + i * 2 + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * The one spelling of an IP address, so that an address is checked and stored the way it will be dialled: an IPv4
 * dotted quad as written (the only IPv4 form accepted: no octal, hex, single-number or short forms, no leading
 * zeros), IPv6 as RFC 5952 writes it, and an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291 section 2.5.5.2)
 * as the IPv4 address it maps, as nginx's access rules read one. null for anything else, including a %zone, which
 * names an interface of the host reading the text and no tailnet address.
 */
export function canonicalAddress(text: string): string | null {
  if (!text.includes(':')) return parseIPv4(text, 0, text.length, null, 0) ? text : null;
  if (text.includes('%')) return null;
  const bytes = new Uint8Array(16);
  if (!parseIPv6(text, bytes, 0)) return null;
  let mapped = bytes[10] === 0xff && bytes[11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) mapped = bytes[i] === 0;
  return mapped ? `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}` : formatIPv6(bytes, 0);
}
