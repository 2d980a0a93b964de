// The proxy credentials of both listeners, with connection parameters carried in the user name:
//
//   password  KEY
//   user      KEY                                           (no parameters: today's form)
//   user      KEY-session-ab12cd-sesstime-30-country-de     (the key, then `-name-value` pairs)
//
// A key may itself contain `-`, so the pairs cannot be found by splitting the user name: the password says where the
// key ends. The user name must start with exactly the password, and only what follows it is read as pairs.
//
// SOCKS5 carries the user name in RFC 1929's one-byte length field, so over SOCKS5 the key and its parameters must
// fit in 255 bytes together (HTTP Basic has no such limit). With every parameter at its longest the pairs take 179
// bytes, which leaves room for keys of up to 76 bytes.
//
// Pure: bytes in, a decision out. The decision depends only on the two buffers the client sent, never on whether the
// key exists, so answering a parameter error before the key lookup tells the client nothing it did not write itself.
import { isUtf8 } from 'node:buffer';
import { timingSafeEqual } from 'node:crypto';

/** How long an idle session keeps its device when the user name gives no `sesstime`; applied by the caller. */
export const SESSION_IDLE_DEFAULT_MINUTES = 10;
export const SESSION_IDLE_MAX_MINUTES = 1440;

/** What the user name asked for beyond the key. Names are lower case; any other spelling is an unknown name. */
export interface ProxyUserParams {
  /**
   * `session-ID`, 1–64 of `[A-Za-z0-9_]`, case-sensitive: connections with the same key and session keep the same
   * device.
   */
  readonly session: string | undefined;
  /**
   * `sesstime-N`: the session is dropped after N idle minutes, a whole number 1–1440 written without leading zeros.
   * Only with `session`, since it means nothing without one; undefined means the caller's default.
   */
  readonly sessionIdleMinutes: number | undefined;
  /** `country-CC`: exactly two letters, given in lower case whatever the client wrote. */
  readonly country: string | undefined;
  /**
   * `device-D`: a device name or numeric id, 1–64 of `[A-Za-z0-9_.]`, passed on as written; whether it names a device
   * in the key's target, and whether digits are an id or a name, is the caller's question. A `-` would end the value,
   * so a device whose name contains `-` (or any other character outside that set) cannot be named here: choose such
   * a device by its id.
   */
  readonly device: string | undefined;
  /**
   * `strict-1` (the only value): when the session's device is down, fail instead of moving the session. Only with
   * `session`, since without one there is no session device to insist on.
   */
  readonly strict: boolean;
}

/**
 * `auth`: not these credentials (empty password, a user name that does not start with the password followed by
 * `-` or the end, a key that is not UTF-8). The front ends answer it exactly as an unknown key, so the two stay
 * indistinguishable. `user-parameter`: the key prefix is right, the pairs after it are not.
 */
export type ProxyUserRefusalReason = 'auth' | 'user-parameter';

export type ProxyUserDecision =
  /** `key` is the password buffer itself, not a copy. */
  | { readonly ok: true; readonly key: Buffer; readonly params: ProxyUserParams }
  /**
   * `detail` is one of a fixed set of texts for the log and `X-Tailgate-Error`: it names the parameter and never
   * repeats anything the client sent, since the bytes after a mistyped password may be part of a real key.
   */
  | { readonly ok: false; readonly reason: ProxyUserRefusalReason; readonly detail: string };

type Refusal = Extract<ProxyUserDecision, { ok: false }>;

export const NO_PARAMS: ProxyUserParams = Object.freeze({
  session: undefined,
  sessionIdleMinutes: undefined,
  country: undefined,
  device: undefined,
  strict: false,
});

const DASH = 0x2d;
const MAX_ID_LENGTH = 64;

const enum Name {
  Session,
  Sesstime,
  Country,
  Device,
  Strict,
}

/** Wire names, indexed by `Name`. */
const NAMES = ['session', 'sesstime', 'country', 'device', 'strict'] as const;
const NAME_BYTES = NAMES.map((name) => Buffer.from(name, 'latin1'));

const VALUE_RULES: readonly string[] = [
  'must be 1-64 of A-Z a-z 0-9 _',
  'must be whole minutes 1-1440, without leading zeros',
  'must be 2 letters',
  'must be a device name or id of 1-64 of A-Z a-z 0-9 _ . ' +
    "(a device whose name has other characters, such as '-', is chosen by its id)",
  "the only value is 1 ('strict-1')",
];

function refusal(reason: ProxyUserRefusalReason, detail: string): Refusal {
  return Object.freeze({ ok: false, reason, detail });
}

const BAD_CREDENTIALS = refusal('auth', 'bad credentials');
const TRAILING_DASH = refusal('user-parameter', "user name parameters: trailing '-'");
const EMPTY_NAME = refusal('user-parameter', "user name parameters: empty parameter name ('--')");
const UNKNOWN_NAME = refusal('user-parameter', `user name parameters: unknown parameter name (known: ${NAMES.join(', ')})`);
const perName = (text: (name: string, i: number) => string) => NAMES.map((name, i) => refusal('user-parameter', text(name, i)));
const MISSING_VALUE = perName((name) => `user name parameter '${name}': no value`);
const BAD_VALUE = perName((name, i) => `user name parameter '${name}': ${VALUE_RULES[i]}`);
const DUPLICATE = perName((name) => `user name parameter '${name}': given more than once`);
const WITHOUT_SESSION = perName((name) => `user name parameter '${name}': only valid with 'session'`);

/** Every text a refusal can carry: a fixed list, so no refusal can carry the client's bytes. */
export const PROXY_USER_REFUSAL_DETAILS: readonly string[] = [
  BAD_CREDENTIALS,
  TRAILING_DASH,
  EMPTY_NAME,
  UNKNOWN_NAME,
  ...MISSING_VALUE,
  ...BAD_VALUE,
  ...DUPLICATE,
  ...WITHOUT_SESSION,
].map((r) => r.detail);

/**
 * Splits proxy credentials into the key and the parameters. A user name equal to the password costs one
 * constant-time comparison and the UTF-8 check the key needs anyway; the pairs are read only when there are some.
 * The lengths of the two buffers are the client's own and no secret; the prefix comparison runs over the password's
 * whole length.
 */
export function parseProxyUser(username: Buffer, password: Buffer): ProxyUserDecision {
  const keyLength = password.length;
  if (keyLength === 0) return BAD_CREDENTIALS;
  if (username.length === keyLength) {
    // Keys are registered as JSON strings, so bytes that are not UTF-8 cannot be one.
    if (!timingSafeEqual(username, password) || !isUtf8(password)) return BAD_CREDENTIALS;
    return { ok: true, key: password, params: NO_PARAMS };
  }
  // Shorter than the password, or the password followed by something other than the separator.
  if (username[keyLength] !== DASH) return BAD_CREDENTIALS;
  if (!timingSafeEqual(username.subarray(0, keyLength), password) || !isUtf8(password)) return BAD_CREDENTIALS;
  return parsePairs(username, keyLength + 1, password);
}

function parsePairs(user: Buffer, start: number, key: Buffer): ProxyUserDecision {
  const end = user.length;
  // Also covers `KEY-`. Checked first so that every later value ends either at a `-` followed by a name or at the end.
  if (user[end - 1] === DASH) return TRAILING_DASH;
  let session: string | undefined;
  let sessionIdleMinutes: number | undefined;
  let country: string | undefined;
  let device: string | undefined;
  let strict = false;
  let seen = 0;
  let pos = start;
  while (pos < end) {
    const nameEnd = endOfPart(user, pos, end);
    if (nameEnd === pos) return EMPTY_NAME;
    const name = nameAt(user, pos, nameEnd);
    if (name < 0) return UNKNOWN_NAME;
    if ((seen & (1 << name)) !== 0) return DUPLICATE[name]!;
    seen |= 1 << name;
    const valueStart = nameEnd + 1;
    if (valueStart >= end) return MISSING_VALUE[name]!;
    const valueEnd = endOfPart(user, valueStart, end);
    if (valueEnd === valueStart) return MISSING_VALUE[name]!;
    switch (name) {
      case Name.Session:
        if (!isIdentifier(user, valueStart, valueEnd, false)) return BAD_VALUE[name]!;
        session = user.toString('latin1', valueStart, valueEnd);
        break;
      case Name.Sesstime:
        sessionIdleMinutes = minutesAt(user, valueStart, valueEnd);
        if (sessionIdleMinutes === 0) return BAD_VALUE[name]!;
        break;
      case Name.Country: {
        if (valueEnd - valueStart !== 2) return BAD_VALUE[name]!;
        const a = user[valueStart]!;
        const b = user[valueStart + 1]!;
        if (!isLetter(a) || !isLetter(b)) return BAD_VALUE[name]!;
        // ASCII letters: setting 0x20 lowers an upper-case one and keeps a lower-case one.
        country = String.fromCharCode(a | 0x20, b | 0x20);
        break;
      }
      case Name.Device:
        if (!isIdentifier(user, valueStart, valueEnd, true)) return BAD_VALUE[name]!;
        device = user.toString('latin1', valueStart, valueEnd);
        break;
      case Name.Strict:
        if (valueEnd - valueStart !== 1 || user[valueStart] !== 0x31) return BAD_VALUE[name]!;
        strict = true;
        break;
    }
    pos = valueEnd + 1;
  }
  if (session === undefined) {
    if (sessionIdleMinutes !== undefined) return WITHOUT_SESSION[Name.Sesstime]!;
    if (strict) return WITHOUT_SESSION[Name.Strict]!;
  }
  return { ok: true, key, params: { session, sessionIdleMinutes, country, device, strict } };
}

function endOfPart(user: Buffer, from: number, end: number): number {
  let i = from;
  while (i < end && user[i] !== DASH) i++;
  return i;
}

function nameAt(user: Buffer, start: number, end: number): Name | -1 {
  const length = end - start;
  for (let i = 0; i < NAME_BYTES.length; i++) {
    const candidate = NAME_BYTES[i]!;
    if (candidate.length !== length) continue;
    let j = 0;
    while (j < length && user[start + j] === candidate[j]) j++;
    if (j === length) return i;
  }
  return -1;
}

function isLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** `[A-Za-z0-9_]{1,64}`, plus `.` when `dot`. */
function isIdentifier(user: Buffer, start: number, end: number, dot: boolean): boolean {
  if (end - start > MAX_ID_LENGTH) return false;
  for (let i = start; i < end; i++) {
    const c = user[i]!;
    if (isLetter(c) || (c >= 0x30 && c <= 0x39) || c === 0x5f || (dot && c === 0x2e)) continue;
    return false;
  }
  return true;
}

/** 1–1440 in decimal without leading zeros, or 0 for anything else. */
function minutesAt(user: Buffer, start: number, end: number): number {
  if (end - start > 4 || user[start] === 0x30) return 0;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = user[i]! - 0x30;
    if (d < 0 || d > 9) return 0;
    n = n * 10 + d;
  }
  return n <= SESSION_IDLE_MAX_MINUTES ? n : 0;
}
