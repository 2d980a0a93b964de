// Which scenarios `npm run bench` runs for each form of its command line: a full run leaves out the scenarios that
// run on their own, a smoke run and --all take every one, --only takes exactly what it names.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseArgs } from '../bench/lib/options.js';
import { SCENARIOS } from '../bench/scenarios/index.js';

const own = SCENARIOS.filter((s) => s.ownRun).map((s) => s.name);
const every = SCENARIOS.map((s) => s.name);

test('the scenarios that run on their own are setup-under-attack and setup-pool', () => {
  assert.deepEqual([...own].sort(), ['setup-pool', 'setup-under-attack']);
});

test('a full run leaves them out and keeps every other scenario in table order', () => {
  const opts = parseArgs([], SCENARIOS);
  assert.deepEqual(opts.scenarios, every.filter((n) => !own.includes(n)));
  assert.equal(opts.writeReadme, true);
});

test('--quick and --all run every scenario', () => {
  assert.deepEqual(parseArgs(['--quick'], SCENARIOS).scenarios, every);
  assert.deepEqual(parseArgs(['--all'], SCENARIOS).scenarios, every);
  assert.deepEqual(parseArgs(['--quick', '--paths', 'direct,tailgate'], SCENARIOS).scenarios, every);
});

test('--only names exactly what runs, a scenario that runs on its own included', () => {
  assert.deepEqual(parseArgs(['--only', 'setup-under-attack'], SCENARIOS).scenarios, ['setup-under-attack']);
  assert.deepEqual(parseArgs(['--quick', '--only', 'throughput-1'], SCENARIOS).scenarios, ['throughput-1']);
  assert.deepEqual(parseArgs(['--only', 'scale'], SCENARIOS).scenarios, SCENARIOS.filter((s) => s.group === 'scale').map((s) => s.name));
});
