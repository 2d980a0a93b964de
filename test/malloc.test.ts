// The malloc trim threshold tailgate runs with (src/core/malloc.ts): how it joins an operator's GLIBC_TUNABLES, and the
// start-up warning of a single process started without it. The workers' own environment is checked in
// test/workers.e2e.test.ts; what the threshold saves is measured in bench/README.md.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../src/config.js';
import { glibcTunables, MALLOC_TRIM_THRESHOLD, onGlibc, setsTrimThreshold } from '../src/core/malloc.js';

test('the trim threshold is added to GLIBC_TUNABLES, and an operator\'s own threshold is kept', () => {
  const ours = `glibc.malloc.trim_threshold=${MALLOC_TRIM_THRESHOLD}`;
  assert.equal(glibcTunables(undefined), ours);
  assert.equal(glibcTunables(''), ours);
  assert.equal(glibcTunables('glibc.malloc.arena_max=2'), `glibc.malloc.arena_max=2:${ours}`);
  assert.equal(glibcTunables('glibc.malloc.trim_threshold=1048576'), 'glibc.malloc.trim_threshold=1048576');
  assert.equal(glibcTunables('glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=0'), 'glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=0');
  assert.equal(setsTrimThreshold(undefined), false);
  assert.equal(setsTrimThreshold('glibc.malloc.trim_threshold_x=1'), false);
  assert.equal(setsTrimThreshold(glibcTunables('glibc.malloc.arena_max=2')), true);
});

test('a single process started without the threshold is warned once at start; with it, or with workers, it is not', () => {
  const warned = (env: NodeJS.ProcessEnv) => loadConfig(env).warnings.some((w) => w.includes('glibc.malloc.trim_threshold'));
  // This machine runs glibc (Debian); on musl the tunable means nothing and nothing is said.
  assert.equal(onGlibc(), true);
  assert.equal(warned({ TAILGATE_WORKERS: '1' }), true);
  assert.equal(warned({ TAILGATE_WORKERS: '1', GLIBC_TUNABLES: glibcTunables(undefined) }), false);
  assert.equal(warned({ TAILGATE_WORKERS: '2' }), false);
});
