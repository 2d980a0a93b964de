// Micro-benchmark of the proxy user name parser (issue 10): what a connection pays to read its credentials, for a
// plain user name (the key alone) and for one with three parameters, next to today's check in tunnel/auth.ts
// (equal lengths, one constant-time comparison, the UTF-8 check).
//
//   node --import tsx bench/proxy-user.ts [--rounds N]
//
// Prints the median over rounds of ns per call; each round is a fixed number of calls on the same buffers, and the
// cases take turns within a round.
import { isUtf8 } from 'node:buffer';
import { timingSafeEqual } from 'node:crypto';
import { parseProxyUser } from '../src/protocol/proxy-user.js';

const roundsArg = process.argv.indexOf('--rounds');
const ROUNDS = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 15;
const CALLS_PER_ROUND = 200_000;

// A generated key is 32 base62 characters (issue 10).
const key = Buffer.from('q8ZrT2mV7xLk4NpW9sDc1HfJ6bYgE3uA');
const plainUser = Buffer.from(key);
const threeParamsUser = Buffer.from(`${key.toString()}-session-ab12cd-sesstime-30-country-de`);

function todaysCheck(username: Buffer, password: Buffer): boolean {
  return username.length !== 0 && username.length === password.length && timingSafeEqual(username, password) && isUtf8(username);
}

// Results land here so the calls cannot be optimised away.
let sink = 0;

/** Median ns per call of each case; the cases take turns round by round, so a busy neighbour slows them alike. */
function measure(cases: readonly (readonly [string, () => void])[]): number[] {
  const samples: number[][] = cases.map(() => []);
  for (let round = 0; round < ROUNDS + 3; round++) {
    cases.forEach(([, run], i) => {
      const start = process.hrtime.bigint();
      run();
      const ns = Number(process.hrtime.bigint() - start) / CALLS_PER_ROUND;
      if (round >= 3) samples[i]!.push(ns); // the first rounds warm the JIT up
    });
  }
  return samples.map((s) => s.sort((a, b) => a - b)[s.length >> 1]!);
}

const cases: (readonly [string, () => void])[] = [
  [
    "today's check (auth.ts)",
    () => {
      for (let i = 0; i < CALLS_PER_ROUND; i++) if (todaysCheck(plainUser, key)) sink++;
    },
  ],
  [
    'plain user name',
    () => {
      for (let i = 0; i < CALLS_PER_ROUND; i++) if (parseProxyUser(plainUser, key).ok) sink++;
    },
  ],
  [
    'three parameters',
    () => {
      for (let i = 0; i < CALLS_PER_ROUND; i++) {
        const decision = parseProxyUser(threeParamsUser, key);
        if (decision.ok && decision.params.session !== undefined) sink++;
      }
    },
  ],
];

// Checked before timing, so a broken parser cannot produce a fast figure.
const check = parseProxyUser(threeParamsUser, key);
if (!check.ok || check.params.session !== 'ab12cd' || check.params.sessionIdleMinutes !== 30 || check.params.country !== 'de') {
  throw new Error('parser did not read the benchmark user name');
}

console.log(`node ${process.version}, ${ROUNDS} rounds of ${CALLS_PER_ROUND} calls, median ns per call`);
const medians = measure(cases);
cases.forEach(([name], i) => console.log(`${name.padEnd(26)} ${medians[i]!.toFixed(1).padStart(8)} ns`));
if (sink === 0) console.log('(no call succeeded)');
