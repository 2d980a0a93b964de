// Rendezvous (highest-random-weight) hashing: a session goes to the device with the highest score of hash(session,
// device), so every gateway and every restart computes the same first choice with no shared state, and removing a
// device moves only the sessions that scored highest on it. Everything here must stay deterministic across
// processes and machines: no random seeds, no string hashing that depends on the engine.

/** murmur3's 32-bit finalizer: a bijection on 32 bits in which every input bit flips each output bit with p ≈ 1/2. */
export function mix32(h: number): number {
  return mixRest(mixFirst(h)) >>> 0;
}

/** mix32's first step; linear over xor, so mixFirst(a ^ b) = mixFirst(a) ^ mixFirst(b). */
export function mixFirst(h: number): number {
  return h ^ (h >>> 16);
}

/** The rest of mix32, as a signed 32-bit integer. */
function mixRest(h: number): number {
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

// Distinct constants for the two hash families, so a device id and a key id of the same value are unrelated.
const DEVICE_SALT = 0x5bd1e995;
const SESSION_SALT = 0x9747b28c;

/** A device's seed, computed once per device list. Ids above 2^32 keep their high bits. */
export function deviceSeed(id: number): number {
  const hi = Math.floor(id / 0x1_0000_0000);
  return mix32(mix32((id >>> 0) ^ DEVICE_SALT) ^ hi);
}

/** The hash of (key id, session name), murmur3-style over the name's UTF-16 code units. */
export function sessionHash(keyId: number, session: string): number {
  let h = mix32(((keyId >>> 0) ^ SESSION_SALT) + Math.floor(keyId / 0x1_0000_0000));
  for (let i = 0; i < session.length; i++) {
    let k = Math.imul(session.charCodeAt(i), 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  return mix32(h ^ session.length);
}

/** The weight of a device (by its seed) for a session (by its hash); the highest weight wins. */
export function weight(session: number, seed: number): number {
  return mix32(session ^ seed);
}

/**
 * weight(session, seed) - 2^31, from mixFirst(session) and mixFirst(seed): orders devices exactly as weight does,
 * for the chooser's loop over every device. The first step is done once per session and once per device instead of
 * once per pair, and flipping the top bit of the unsigned weight keeps every value a signed 32-bit integer, which
 * the engine keeps unboxed (half of the unsigned weights are above 2^31 and would be doubles).
 */
export function weightRank(sessionFirst: number, seedFirst: number): number {
  return mixRest(sessionFirst ^ seedFirst) ^ 0x80000000;
}
