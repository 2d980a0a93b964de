// `tailgate import-legacy <url>` as an operator runs it (a child process with the gateway's environment), against a
// throw-away database holding the original Go service's table: what it creates, what it skips and why, that a
// second run changes nothing, and that no key is ever printed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hashKey } from '../src/core/key.js';
import { createLogger } from '../src/log.js';
import { openStore } from '../src/store/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = createLogger('silent');

const ROWS: [string | null, string | null][] = [
  ['LegacyGoKey-000000000001', '100.64.0.1'],
  ['LegacyGoKey-000000000002', 'fd7a:115c:a1e0:0:0:0:0:2'],
  ['short', '100.64.0.3'],
  ['LegacyGoKey-000000000004', 'not-an-ip'],
  ['LegacyGoKey-000000000005', '192.168.1.5'],
  ['Legacy:GoKey-00000000006', '100.64.0.6'],
  ['LegacyGoKey-000000000007', '100.64.0.7/32'],
  ['LegacyGoKey-000000000008', '100.64.0.8'],
  [null, '100.64.0.9'],
];
const ALREADY_REGISTERED = 'LegacyGoKey-000000000008';

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(repoRoot, 'bin/tailgate.js'), ...args],
      { cwd: repoRoot, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

describe('tailgate import-legacy', { timeout: 180_000 }, () => {
  let legacy: TestDatabase;
  let gateway: TestDatabase;
  let env: Record<string, string>;

  before(async () => {
    [legacy, gateway] = await Promise.all([createTestDatabase('legacy_go'), createTestDatabase('import_target')]);
    await legacy.sql`CREATE TABLE register_key_ip_map (reg_key varchar(255), ip_address varchar(64))`;
    for (const [key, ip] of ROWS) await legacy.sql`INSERT INTO register_key_ip_map (reg_key, ip_address) VALUES (${key}, ${ip})`;
    env = {
      DATABASE_URL: gateway.url,
      TAILGATE_ALLOW_CIDRS: '100.64.0.0/10,fd7a:115c:a1e0::/48',
      TAILGATE_DEVICE_PORT: '3128',
      TAILGATE_DEVICE_PROTOCOL: 'socks5',
      TAILGATE_LOG_LEVEL: 'warn',
    };
    // One key the gateway already has, bound elsewhere: the import must neither duplicate nor move it.
    const store = await openStore({ database: gateway.target, dataDir: '/unused', log });
    try {
      await store.upsert({ keyHash: hashKey(ALREADY_REGISTERED), ip: '100.64.9.9', port: 8939, protocol: 'http' });
    } finally {
      await store.close();
    }
  });
  after(async () => {
    await legacy?.drop();
    await gateway?.drop();
  });

  test('creates a device and a key per valid row, skips the rest with a reason, prints no key', async () => {
    const { code, stdout, stderr } = await run(['import-legacy', legacy.url], env);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /: 9 rows\n/);
    assert.match(stdout, /created: +3\n/);
    assert.match(stdout, /already present: +1\n/);
    assert.match(stdout, /skipped: +5\n/);
    assert.match(stdout, /row 3: reg_key is not a valid key/);
    assert.match(stdout, new RegExp(`row 4 \\(key ${hashKey(ROWS[3]![0]!).slice(0, 10)}\\): ip_address "not-an-ip" is not an IP address`));
    assert.match(stdout, /row 5 \(key [0-9a-f]{10}\): ip_address 192\.168\.1\.5 is outside TAILGATE_ALLOW_CIDRS/);
    assert.match(stdout, /row 6: reg_key is not a valid key/);
    assert.match(stdout, /row 9: reg_key is not a valid key/);
    for (const [key] of ROWS) if (key !== null) assert.ok(!stdout.includes(key) && !stderr.includes(key), `key ${key} printed`);

    const store = await openStore({ database: gateway.target, dataDir: '/unused', log });
    try {
      const expected: [string, string][] = [
        ['LegacyGoKey-000000000001', '100.64.0.1'],
        ['LegacyGoKey-000000000002', 'fd7a:115c:a1e0::2'],
        ['LegacyGoKey-000000000007', '100.64.0.7'],
      ];
      for (const [key, ip] of expected) {
        const node = await store.findByKeyHash(hashKey(key));
        assert.ok(node, `${key} was not imported`);
        assert.equal(node.ip, ip);
        assert.equal(node.port, 3128);
        assert.equal(node.protocol, 'socks5');
      }
      const kept = await store.findByKeyHash(hashKey(ALREADY_REGISTERED));
      assert.equal(kept?.ip, '100.64.9.9', 'an existing key is left as it is');
      assert.equal(kept?.port, 8939);
      assert.equal((await store.listKeys()).length, 4);
      assert.equal((await store.listDevices()).length, 4);
    } finally {
      await store.close();
    }
  });

  test('a second run finds everything present and creates nothing', async () => {
    const { code, stdout, stderr } = await run(['import-legacy', legacy.url], env);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /created: +0\n/);
    assert.match(stdout, /already present: +4\n/);
    assert.match(stdout, /skipped: +5\n/);
    const store = await openStore({ database: gateway.target, dataDir: '/unused', log });
    try {
      assert.equal((await store.listKeys()).length, 4);
      assert.equal((await store.listDevices()).length, 4);
    } finally {
      await store.close();
    }
  });

  test('a database without the table fails naming it, without its password', async () => {
    const url = gateway.url.replace('postgres://postgres@', 'postgres://postgres:s3cret-pw@');
    const { code, stdout, stderr } = await run(['import-legacy', url], env);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.match(stderr, /reading register_key_ip_map from postgres:\/\/postgres:\*\*\*@.*register_key_ip_map" does not exist/);
    assert.ok(!stderr.includes('s3cret-pw'));
  });

  test('a wrong command line prints the usage and exits 2', async () => {
    const { code, stderr } = await run(['import-legacy'], env);
    assert.equal(code, 2);
    assert.match(stderr, /usage: tailgate import-legacy <postgres URL>/);
  });
});
