// scripts/bench-tools.sh gost: gost's sources live outside the repository, found through TAILGATE_GOST_SOURCE. The
// real build takes minutes and needs those sources, so these tests hand the script a build.sh of their own: what is
// checked is the wiring (which build.sh runs, with which tools directory, and what the script prints or says).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../scripts/bench-tools.sh');

function run(env: Record<string, string>) {
  return spawnSync('bash', [script, 'gost'], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
}

test('without a build.sh where TAILGATE_GOST_SOURCE points, it stops and names the variable', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gost-source-'));
  try {
    const r = run({ TAILGATE_GOST_SOURCE: dir });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /TAILGATE_GOST_SOURCE/);
    assert.ok(r.stderr.includes(path.join(dir, 'build.sh')), r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("it runs that directory's build.sh with the tools directory and prints the binary it built", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gost-source-'));
  try {
    const tools = path.join(dir, 'tools');
    // Like gost's own build.sh: builds into $TAILGATE_TOOLS_DIR/gost-<version>/gost, chatter on stderr, the path last on stdout.
    writeFileSync(
      path.join(dir, 'build.sh'),
      '#!/usr/bin/env bash\nset -e\nout="$TAILGATE_TOOLS_DIR/gost-test"\nmkdir -p "$out"\nprintf "#!/bin/sh\\n" > "$out/gost"\nchmod +x "$out/gost"\necho building >&2\necho "$out/gost"\n',
    );
    chmodSync(path.join(dir, 'build.sh'), 0o755);
    const r = run({ TAILGATE_GOST_SOURCE: dir, TAILGATE_TOOLS_DIR: tools });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').pop(), path.join(tools, 'gost-test', 'gost'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a build.sh that prints no executable is an error naming the source directory', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gost-source-'));
  try {
    writeFileSync(path.join(dir, 'build.sh'), '#!/usr/bin/env bash\necho /nonexistent/gost\n');
    const r = run({ TAILGATE_GOST_SOURCE: dir, TAILGATE_TOOLS_DIR: path.join(dir, 'tools') });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`TAILGATE_GOST_SOURCE=${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
