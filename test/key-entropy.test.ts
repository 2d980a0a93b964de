// Generated keys carry at least 128 bits: the bound follows from the alphabet and the length when every character is
// uniform and independent, so the bound is stated and the uniformity checked (chi-square over every character
// position), with a control showing the check catches the classic modulo bias.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { GENERATED_KEY_LENGTH, generateSecret } from '../src/bindings/registry.js';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KEYS = 20_000;

/**
 * The chi-square value that a uniform sample exceeds with probability p (one-sided z for p), by the Wilson-Hilferty
 * approximation, accurate to well under 1 % at 61 degrees of freedom.
 */
function chiSquareCritical(df: number, z: number): number {
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

/** Chi-square of observed counts against a uniform expectation. */
function chiSquare(counts: readonly number[], total: number): number {
  const expected = total / counts.length;
  return counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
}

/** Per-position symbol counts of keys. */
function countByPosition(keys: readonly string[], length: number): number[][] {
  const counts = Array.from({ length }, () => new Array<number>(ALPHABET.length).fill(0));
  for (const k of keys) for (let i = 0; i < length; i++) counts[i]![ALPHABET.indexOf(k[i]!)]!++;
  return counts;
}

// z = 5.2 is p ≈ 1e-7 per position: 32 positions make a false alarm about 3 in a million runs.
const CRITICAL = chiSquareCritical(ALPHABET.length - 1, 5.2);

test('the bound: 32 characters of a 62-symbol alphabet are log2(62^32) ≈ 190.5 bits, above 128', () => {
  assert.equal(GENERATED_KEY_LENGTH, 32);
  const bits = GENERATED_KEY_LENGTH * Math.log2(ALPHABET.length);
  assert.ok(bits >= 128, `${bits} bits`);
  assert.ok(Math.abs(bits - 190.53) < 0.01, String(bits));
  // Even a key at the shortest length that would still meet the bound needs 22 characters.
  assert.equal(Math.ceil(128 / Math.log2(ALPHABET.length)), 22);
});

test('every generated key is 32 characters of exactly that alphabet, all 62 symbols used, no repeats', () => {
  const keys = Array.from({ length: KEYS }, () => generateSecret());
  const seen = new Set<string>();
  for (const k of keys) {
    assert.match(k, /^[0-9A-Za-z]{32}$/);
    seen.add(k);
  }
  assert.equal(seen.size, KEYS, 'no key twice');
  const symbols = new Set(keys.join(''));
  assert.equal(symbols.size, 62);
});

/** Symbol counts over every character of every key. */
function pooled(counts: number[][]): number[] {
  return counts.reduce((acc, c) => acc.map((v, i) => v + c[i]!), new Array<number>(ALPHABET.length).fill(0));
}

test('uniform: chi-square over 62 symbols, pooled and at every position, below the p = 1e-7 critical value; the modulo-biased control caught', () => {
  const keys = Array.from({ length: KEYS }, () => generateSecret());
  const counts = countByPosition(keys, GENERATED_KEY_LENGTH);
  const all = chiSquare(pooled(counts), KEYS * GENERATED_KEY_LENGTH);
  assert.ok(all < CRITICAL, `pooled chi-square ${all.toFixed(1)} >= ${CRITICAL.toFixed(1)}`);
  const values = counts.map((c) => chiSquare(c, KEYS));
  const worst = Math.max(...values);
  assert.ok(worst < CRITICAL, `worst position chi-square ${worst.toFixed(1)} >= ${CRITICAL.toFixed(1)}`);
  // Over the 32 positions the statistic's mean is its degrees of freedom (61, standard error about 2); far from it
  // either way is wrong (too small would mean too regular to be random).
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  assert.ok(mean > 61 - 12 && mean < 61 + 12, `mean chi-square ${mean.toFixed(1)}`);

  // Control: `byte % 62` without rejecting bytes >= 248 favours the first 8 symbols by 5:4 (about 0.2 bits a
  // character lost). The pooled check must fail it, by far (its statistic is about 4,000 here).
  const biased = Array.from({ length: KEYS }, () => Array.from(randomBytes(GENERATED_KEY_LENGTH), (b) => ALPHABET[b % 62]).join(''));
  const biasedAll = chiSquare(pooled(countByPosition(biased, GENERATED_KEY_LENGTH)), KEYS * GENERATED_KEY_LENGTH);
  assert.ok(biasedAll > 10 * CRITICAL, `the biased control scored ${biasedAll.toFixed(1)}: the check has too little power`);
});

test('an explicit length is honoured with the same alphabet', () => {
  for (const n of [1, 22, 64, 255]) assert.match(generateSecret(n), new RegExp(`^[0-9A-Za-z]{${n}}$`));
});
