// Seeded byte-level mutation shared by every fuzz target: the same (seed, input number) always gives the same bytes,
// so a finding is replayed from two numbers.
import { int, pick } from '../helpers/random.js';

export type Rng = () => number;

/** Bytes parsers treat specially: line ends, NUL, separators, SOCKS5 versions and types, the ends of a byte. */
const INTERESTING = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x25, 0x2c, 0x2d, 0x2e, 0x2f, 0x3a, 0x3b, 0x40, 0x5b, 0x5c, 0x5d, 0x7b, 0x7d, 0x7f, 0x80, 0xc0, 0xff];

/** Sequences worth splicing into text protocols. */
const TOKENS = ['\r\n', '\n', '\r', '\0', '\r\n\r\n', ' ', '\t', ':', '-', '%0d%0a', '%00', '[', ']', '"', '\\u0000', '\ud800', '{', '}', ',', 'chunked', 'Content-Length: 0\r\n', 'Transfer-Encoding: chunked\r\n', '\r\n ', '\xff\xfe'];

/** Applies 1..max random mutations to a copy of `input`; `donor` is another input to splice from. */
export function mutate(r: Rng, input: Buffer, donor: Buffer, max = 4): Buffer {
  let b = Buffer.from(input);
  const n = 1 + int(r, max);
  for (let m = 0; m < n; m++) {
    const at = b.length === 0 ? 0 : int(r, b.length);
    switch (int(r, 9)) {
      case 0: // flip a bit
        if (b.length > 0) b[at] = b[at]! ^ (1 << int(r, 8));
        break;
      case 1: // an interesting byte
        if (b.length > 0) b[at] = pick(r, INTERESTING);
        break;
      case 2: // a random byte
        if (b.length > 0) b[at] = int(r, 256);
        break;
      case 3: // insert a token
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(r, TOKENS), 'latin1'), b.subarray(at)]);
        break;
      case 4: // delete a range
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(r, 16)))]);
        break;
      case 5: // duplicate a range
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 1 + int(r, 32)), b.subarray(at)]);
        break;
      case 6: // truncate
        b = b.subarray(0, at);
        break;
      case 7: // splice the donor's tail
        b = Buffer.concat([b.subarray(0, at), donor.subarray(donor.length === 0 ? 0 : int(r, donor.length))]);
        break;
      default: {
        // random bytes
        const extra = Buffer.alloc(1 + int(r, 8));
        for (let i = 0; i < extra.length; i++) extra[i] = int(r, 256);
        b = Buffer.concat([b.subarray(0, at), extra, b.subarray(at)]);
      }
    }
  }
  return b;
}

export function randomBytes(r: Rng, max: number): Buffer {
  const b = Buffer.alloc(int(r, max + 1));
  for (let i = 0; i < b.length; i++) b[i] = int(r, 256);
  return b;
}

/** Cuts `data` into 1..n pieces at random points (a stream's reads). */
export function chunk(r: Rng, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    const size = r() < 0.3 ? 1 : 1 + int(r, Math.max(1, data.length - at));
    out.push(data.subarray(at, at + size));
    at += size;
  }
  return out;
}

/** Text from an alphabet, sometimes with one hostile character injected. */
export function text(r: Rng, alphabet: string, min: number, max: number): string {
  let s = '';
  const n = min + int(r, max - min + 1);
  for (let i = 0; i < n; i++) s += alphabet[int(r, alphabet.length)];
  if (r() < 0.1 && s.length > 0) {
    const at = int(r, s.length);
    s = s.slice(0, at) + pick(r, ['\r', '\n', '\0', ' ', '\t', '\x7f', '\xe9', ':', '@', '/', '%', '-']) + s.slice(at);
  }
  return s;
}
