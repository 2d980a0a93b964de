// The smoke of `npm run fuzz`: the same generators, mutators and oracles (test/fuzz/), 50,000 inputs instead of a
// million. A new seed every run, printed, so CI keeps exploring; a finding fails with the seed, the input's number
// and the file holding its bytes (`npm run fuzz -- --seed S --replay I` runs it alone).
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runFuzz } from './fuzz/run.js';

const INPUTS = 50_000;

test(`fuzz smoke: ${INPUTS.toLocaleString('en')} inputs to the SOCKS5 codec, HTTP head code, proxy user names and API bodies, 0 crashes, 0 hangs`, { timeout: 600_000 }, async (t) => {
  const seed = Number(process.env.TAILGATE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const outDir = path.join(os.tmpdir(), 'tailgate-fuzz-findings');
  t.diagnostic(`seed ${seed}`);
  // A generous hang limit: the machine may be shared; a real hang does not finish at all.
  const result = await runFuzz({ inputs: INPUTS, seed, outDir, hangMs: 10_000 });
  t.diagnostic(`${result.inputs} inputs in ${(result.elapsedMs / 1000).toFixed(1)} s (${Math.round(result.inputsPerSecond)}/s): ${JSON.stringify(result.perTarget)}`);
  const f = result.finding;
  assert.equal(f, null, f === null ? '' : `${f.kind} in ${f.target} at input ${f.index} of seed ${seed}: ${f.message}\ninput: ${f.file}\nreplay: npm run fuzz -- --seed ${seed} --replay ${f.index}`);
  assert.equal(result.inputs, INPUTS);
  for (const name of ['socks5', 'http', 'proxy-user', 'api-json']) assert.ok((result.perTarget[name] ?? 0) > INPUTS / 20, `${name} got ${result.perTarget[name]} inputs`);
});
