// npm run fuzz [-- --inputs N] [--seed S] [--only socks5,http,proxy-user,api-json] [--out DIR] [--replay I]
// Feeds N (default 1,000,000) generated and mutated inputs to the SOCKS5 codec, the HTTP head code, the proxy user
// name parser and the API's JSON bodies (test/fuzz/). Prints the seed, inputs/s and counts; on a finding writes the
// input to DIR (default fuzz-findings/) and exits 1. --replay I runs input I of --seed S alone, in this thread.
import { parseArgs } from 'node:util';
import { replay, runFuzz } from '../test/fuzz/run.js';

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string', default: 'fuzz-findings' },
    replay: { type: 'string' },
    'hang-ms': { type: 'string', default: '5000' },
  },
});

function integer(name: string, text: string): number {
  if (!/^\d+$/.test(text)) {
    console.error(`--${name} must be a whole number, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return Number(text);
}

const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer('seed', values.seed);
const only = values.only?.split(',').filter((s) => s !== '');

if (values.replay !== undefined) {
  console.log(await replay(seed, integer('replay', values.replay), only));
  process.exit(0);
}

const inputs = integer('inputs', values.inputs);
console.log(`fuzz: seed ${seed}, ${inputs.toLocaleString('en')} inputs${only ? ` (only ${only.join(', ')})` : ''}`);
const result = await runFuzz({
  inputs,
  seed,
  only,
  outDir: values.out,
  hangMs: integer('hang-ms', values['hang-ms']),
  onProgress: (done, ms) => {
    if (done % 100_000 === 0) console.log(`  ${done.toLocaleString('en')} inputs, ${Math.round(done / (ms / 1000)).toLocaleString('en')}/s`);
  },
});
const counts = Object.entries(result.perTarget).map(([name, n]) => `${name} ${n.toLocaleString('en')}`).join(', ');
console.log(`fuzz: ${result.inputs.toLocaleString('en')} inputs in ${(result.elapsedMs / 1000).toFixed(1)} s, ${Math.round(result.inputsPerSecond).toLocaleString('en')} inputs/s (${counts}), seed ${seed}`);
if (result.finding !== null) {
  const f = result.finding;
  console.error(`fuzz: ${f.kind} in ${f.target} at input ${f.index}: ${f.message}\n  input written to ${f.file}\n  replay: npm run fuzz -- --seed ${seed} --replay ${f.index}${only ? ` --only ${only.join(',')}` : ''}`);
  process.exit(1);
}
console.log('fuzz: 0 crashes, 0 hangs');
