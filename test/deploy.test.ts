// compose.yaml and the Dockerfile cannot be run here (no Docker engine), so this checks what can go stale
// silently: the variable names they set, the values they pass, and that the image runs the tested start command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CONFIG_VARIABLES, TAILSCALED_VARIABLES, loadConfig } from '../src/config.js';
import { glibcTunables } from '../src/core/malloc.js';

const root = new URL('../', import.meta.url);
const read = (p: string) => readFileSync(new URL(p, root), 'utf8');

/** The `environment:` map of one service in compose.yaml, with ${VAR...} references replaced by sample values. */
function composeEnvironment(service: string): Record<string, string> {
  const lines = read('compose.yaml').split('\n');
  const start = lines.findIndex((l) => l === `  ${service}:`);
  assert.ok(start >= 0, `service ${service} not found in compose.yaml`);
  const env: Record<string, string> = {};
  let inEnv = false;
  for (const line of lines.slice(start + 1)) {
    if (/^ {2}\S/.test(line) || /^\S/.test(line)) break; // next service or top-level key
    if (/^ {4}environment:\s*$/.test(line)) {
      inEnv = true;
      continue;
    }
    if (inEnv && /^ {4}\S/.test(line)) inEnv = false;
    const m = inEnv ? /^ {6}([A-Z0-9_]+):\s*(.*)$/.exec(line) : null;
    if (m) {
      const raw = m[2]!.replace(/^"(.*)"$/, '$1');
      env[m[1]!] = raw.replace(/\$\{([A-Z0-9_]+)(:[-?][^}]*)?\}/g, (_all, name: string) => `sample-${name.toLowerCase()}-0123456789abcdef`);
    }
  }
  return env;
}

test('every variable compose.yaml sets for tailgate is one tailgate reads', () => {
  const env = composeEnvironment('tailgate');
  assert.ok(Object.keys(env).length >= 5, 'no environment parsed from compose.yaml');
  const known = new Set<string>([...CONFIG_VARIABLES, ...TAILSCALED_VARIABLES]);
  const unknown = Object.keys(env).filter((k) => !known.has(k));
  assert.deepEqual(unknown, [], `compose.yaml sets variables tailgate does not read: ${unknown.join(', ')}`);
});

test('compose.yaml values pass tailgate configuration validation', () => {
  const env = composeEnvironment('tailgate');
  const c = loadConfig(env);
  assert.equal(c.tailnet?.userspace, true);
  assert.ok(c.headscale, 'headscale approval configured');
  assert.ok(c.databaseUrl?.startsWith('postgres://'));
});

test('the Dockerfile sets only known variables and runs the same command as npm start, with the same malloc trim threshold', () => {
  const dockerfile = read('Dockerfile');
  const known = new Set<string>([...CONFIG_VARIABLES, 'NODE_ENV', 'GLIBC_TUNABLES']);
  const envBlock = /^ENV ([\s\S]*?)(?:\n(?!\s))/m.exec(dockerfile);
  assert.ok(envBlock, 'no ENV in Dockerfile');
  const names = [...envBlock[1]!.matchAll(/([A-Z0-9_]+)=/g)].map((m) => m[1]!);
  assert.ok(names.length > 0);
  assert.deepEqual(names.filter((n) => !known.has(n)), []);
  const start = JSON.parse(read('package.json')).scripts.start as string;
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile);
  assert.ok(cmd, 'no CMD in Dockerfile');
  // npm start sets the malloc trim threshold unless the environment has GLIBC_TUNABLES already; the image sets it.
  const tunables = glibcTunables(undefined);
  assert.match(dockerfile, new RegExp(`^\\s*GLIBC_TUNABLES=${tunables.replaceAll('.', '\\.')}$`, 'm'));
  assert.ok(start.endsWith(`&& GLIBC_TUNABLES=\${GLIBC_TUNABLES:-${tunables}} ${JSON.parse(cmd[1]!).join(' ')}`), `npm start (${start}) and CMD (${cmd[1]}) differ`);
});

test("the image's npm ci has the script that fixes the PostgreSQL client, copied before it runs", () => {
  const dockerfile = read('Dockerfile');
  const postinstall = JSON.parse(read('package.json')).scripts.postinstall as string;
  assert.equal(postinstall, 'node scripts/patch-postgres.mjs');
  const copied = dockerfile.indexOf('COPY scripts/patch-postgres.mjs ./scripts/');
  const installed = dockerfile.indexOf('RUN npm ci');
  assert.ok(copied >= 0, 'the Dockerfile copies scripts/patch-postgres.mjs');
  assert.ok(copied < installed, 'before npm ci runs');
});
