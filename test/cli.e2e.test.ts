// The `tailgate` command as an operator runs it: the real binary (bin/tailgate.js) in a child process, with
// TAILGATE_API_URL and TAILGATE_ADMIN_TOKEN, against a real gateway on PostgreSQL with a stand-in HTTP device; what it
// prints is used as printed (the curl lines of a new key run through real curl). `serve` runs as its own process on
// an embedded data dir, piped (JSON lines) and on a pseudo-terminal from util-linux `script` (readable lines and the
// three newcomer lines, the admin token nowhere).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { pino } from 'pino';
import { startGateway, type Gateway } from '../src/app.js';
import { buildProgram } from '../src/cli/program.js';
import { waitFor } from '../testbed/wait.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { curl } from './helpers/curl.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './helpers/db.js';
import { closedPort, startHttpDevice, type Device } from './helpers/devices.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { startEchoTarget, startHttpTarget, type EchoTarget, type Listening } from './helpers/targets.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(repoRoot, 'bin/tailgate.js');
const TOKEN = 'cli-admin-token-0123456789abcdef';
const log = pino({ level: 'silent' });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let db: TestDatabase;
let gw: Gateway;
let device: Device;
let web: Listening;
let echo: EchoTarget;

/** One run of the binary against the test gateway; `env` adds to or overrides its environment. */
function tailgate(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd: repoRoot,
        env: { PATH: process.env.PATH ?? '', TAILGATE_API_URL: `http://127.0.0.1:${gw.ports.api}`, TAILGATE_ADMIN_TOKEN: TOKEN, ...env },
        timeout: 30_000,
      },
      (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

/** A run that must succeed; its stdout. */
async function ok(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await tailgate(args, env);
  assert.equal(r.code, 0, `tailgate ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function okJson<T = any>(args: string[], env: Record<string, string> = {}): Promise<T> {
  return JSON.parse(await ok([...args, '--json'], env)) as T;
}

/**
 * A table: the header, then rows whose columns line up: every line has one cell per column (cells are at least two
 * blanks apart), and in each column every cell starts at the same place (left-aligned) or ends at the same place.
 */
function assertTable(out: string, headers: string[]): string[] {
  const lines = out.trimEnd().split('\n');
  const spans = lines.map((line) => [...line.matchAll(/\S+(?: \S+)*/g)].map((m) => ({ start: m.index!, end: m.index! + m[0].length, text: m[0] })));
  assert.deepEqual(spans[0]!.map((c) => c.text), headers, out);
  for (const [i, cells] of spans.entries()) assert.equal(cells.length, headers.length, `line ${i} has ${cells.length} cells:\n${out}`);
  headers.forEach((header, col) => {
    const starts = new Set(spans.map((cells) => cells[col]!.start));
    const ends = new Set(spans.map((cells) => cells[col]!.end));
    assert.ok(starts.size === 1 || ends.size === 1, `column ${header} is not aligned:\n${out}`);
  });
  return lines.slice(1);
}

const row = (rows: string[], cell: RegExp) => rows.find((r) => cell.test(r));

/** The curl line as printed, pointed at a local target instead of example.com. */
async function runPrintedCurl(line: string, url: string) {
  const words = line.trim().split(/\s+/);
  assert.equal(words[0], 'curl', line);
  assert.equal(words.at(-1), 'https://example.com', line);
  return curl([...words.slice(1, -1), url]);
}

before(async () => {
  db = await createTestDatabase('cli');
  [device, web, echo] = await Promise.all([startHttpDevice('127.0.0.1'), startHttpTarget(), startEchoTarget()]);
  gw = await startGateway(loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_USAGE_FLUSH_MS: '100' }), log);
});

after(async () => {
  await gw?.close();
  await Promise.all([device?.close(), web?.close(), echo?.close()]);
  await db?.drop();
});

describe('against a running gateway', { timeout: 240_000 }, () => {
  let deviceId = 0;
  let keyId = 0;
  let secret = '';

  test('enroll --ip registers a device; devices ls shows it as a table and as JSON; show and edit', async () => {
    const out = await ok(['enroll', 'cli-device-key-0001', '--ip', '127.0.0.1', '--port', String(device.port), '--name', 'phone-a']);
    assert.match(out, /^registered: key [0-9a-f]{10} -> 127\.0\.0\.1:\d+ \(http\) via address\n/);

    const rows = assertTable(await ok(['devices', 'ls']), ['ID', 'NAME', 'ADDRESS', 'PROTO', 'ONLINE', 'HEALTH', 'RELAYED', 'TUNNELS', 'LABELS']);
    const mine = row(rows, /phone-a/);
    assert.ok(mine, rows.join('\n'));
    assert.match(mine, new RegExp(`^ *\\d+  phone-a +127\\.0\\.0\\.1:${device.port} +http +- +unknown \\(no-status\\) +- +0  -$`));
    // `devices` alone is `devices ls`.
    assert.equal(await ok(['devices']), await ok(['devices', 'ls']));

    const list = await okJson<any[]>(['devices', 'ls']);
    const api = await adminCall(gw.ports.api, TOKEN, 'GET', '/devices');
    // health.since of a device nothing has spoken about yet is the time of the answer; everything else is stored.
    const settled = (devices: any[]) => devices.map((d) => ({ ...d, health: { ...d.health, since: null } }));
    assert.deepEqual(settled(list), settled(api.json), '--json prints what the API answered');
    deviceId = list.find((d) => d.name === 'phone-a').id;

    const shown = await ok(['devices', 'show', String(deviceId)]);
    assert.match(shown, new RegExp(`^id: +${deviceId}\\nname: +phone-a\\naddress: +127\\.0\\.0\\.1:${device.port} \\(http\\)\\n`));

    let edited = await okJson(['devices', 'edit', String(deviceId), '--label', 'country=de', '--label', 'tier=a=b']);
    assert.deepEqual(edited.labels, { country: 'de', tier: 'a=b' });
    edited = await okJson(['devices', 'edit', String(deviceId), '--unlabel', 'tier', '--name', 'phone-b']);
    assert.deepEqual(edited.labels, { country: 'de' }, 'labels not named stay');
    assert.equal(edited.name, 'phone-b');
    assert.match(await ok(['devices', 'ls']), /phone-b .* country=de\n/);
    const disabled = await okJson(['devices', 'edit', String(deviceId), '--disable']);
    assert.equal(disabled.enabled, false);
    assert.deepEqual(disabled.health, { ...disabled.health, state: 'down', reason: 'disabled' });
    assert.equal((await okJson(['devices', 'edit', String(deviceId), '--enable'])).enabled, true);
  });

  test('keys create prints the secret once with curl lines that work through both listeners', async () => {
    const out = await ok(['keys', 'create', '--device', String(deviceId), '--name', 'customer-1', '--proxy-host', '127.0.0.1'], {
      // The gateway's own port variables in the operator's shell are what the curl lines use by default.
      TAILGATE_HTTP_PORT: String(gw.ports.http),
      TAILGATE_SOCKS_PORT: String(gw.ports.socks),
    });
    const lines = out.trimEnd().split('\n');
    assert.equal(lines.length, 4, out);
    const created = /^created key (\d+) "customer-1" -> device (\d+) \(prefix ([0-9a-f]{10})\)$/.exec(lines[0]!);
    assert.ok(created, out);
    keyId = Number(created[1]);
    assert.equal(Number(created[2]), deviceId);
    secret = /^secret \(shown this once, only its SHA-256 is stored\): ([A-Za-z0-9]{32})$/.exec(lines[1]!)?.[1] ?? '';
    assert.ok(secret, out);
    assert.equal(lines[2], `  curl -x http://${secret}:${secret}@127.0.0.1:${gw.ports.http} https://example.com`);
    assert.equal(lines[3], `  curl --socks5 ${secret}:${secret}@127.0.0.1:${gw.ports.socks} https://example.com`);
    for (const line of lines.slice(2)) {
      const r = await runPrintedCurl(line, `http://127.0.0.1:${web.port}/hello`);
      assert.equal(r.httpCode, 200, `${line}\n${r.stderr}`);
      assert.match(r.stdout, /^hello from http/);
    }

    const listed = await ok(['keys', 'ls']);
    assert.ok(!listed.includes(secret), 'a listing never shows a secret');
    const rows = assertTable(listed, ['ID', 'NAME', 'PREFIX', 'TARGET', 'STATE', 'EXPIRES', 'LIMITS', 'QUOTA USED']);
    assert.match(row(rows, /customer-1/) ?? '', new RegExp(`customer-1 +${created[3]}  device ${deviceId} +active +- +- +-$`));
    assert.ok(!(await ok(['keys', 'show', String(keyId)])).includes(secret));
  });

  test('keys limits sets limits in human units, shows them humanly, and clears them', async () => {
    const set = await okJson(['keys', 'limits', String(keyId), '--max-tunnels', '3', '--rate', '2.5', '--burst', '4', '--down', '1MiB/s', '--up', '512KiB', '--quota', '10GiB/month']);
    assert.deepEqual(set.limits, {
      maxTunnels: 3,
      tunnelsPerSecond: 2.5,
      tunnelBurst: 4,
      bytesPerSecondDown: 1_048_576,
      bytesPerSecondUp: 524_288,
      quota: { bytes: 10 * 1024 ** 3, period: 'month' },
    });
    const shown = await ok(['keys', 'limits', String(keyId)]);
    assert.match(shown, /\nlimits: +max 3 tunnels, 2\.5\/s \(burst 4\), down 1 MiB\/s, up 512 KiB\/s, 10 GiB\/month\n/);
    assert.match(shown, /\nquota used: +\d+(\.\d)? (B|KiB) of 10 GiB since \d{4}-\d\d-01 00:00Z, resets \d{4}-\d\d-01 00:00Z\n/);
    assert.match(await ok(['keys', 'ls']), /max 3 tunnels, 2\.5\/s \(burst 4\), down 1 MiB\/s, up 512 KiB\/s, 10 GiB\/month +\d+(\.\d)? (B|KiB) of 10 GiB\n/);

    const cleared = await okJson(['keys', 'limits', String(keyId), '--clear', 'down', '--clear', 'quota', '--clear', 'rate', '--clear', 'burst', '--up', '1MB']);
    assert.deepEqual(cleared.limits, { maxTunnels: 3, bytesPerSecondUp: 1_000_000 });
    assert.deepEqual((await okJson(['keys', 'limits', String(keyId), '--clear', 'all'])).limits, {});
    // Traffic still flows with no limits left.
    const r = await curl(['-x', `http://${secret}:${secret}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/big?n=10000`]);
    assert.equal(r.httpCode, 200, r.stderr);
  });

  test('usage after traffic: totals by key and by device, and one key over time', async () => {
    const by = await waitFor('the traffic in usage', 10_000, async () => {
      const u = await okJson(['usage', '--by', 'key', '--since', '1h']);
      const mine = u.usage.find((x: { id: number }) => x.id === keyId);
      return mine !== undefined && mine.tunnels >= 3 && u;
    });
    const mine = by.usage.find((x: { id: number }) => x.id === keyId);
    assert.equal(mine.name, 'customer-1');
    assert.ok(mine.bytesDown > 10_000, JSON.stringify(mine));

    const table = await ok(['usage', '--by', 'key', '--since', '1h']);
    assert.match(table, /^usage by key from \d{4}-\d\d-\d\d \d\d:00Z to \d{4}-\d\d-\d\d \d\d:\d\dZ\n/);
    const rows = assertTable(table.split('\n').slice(1).join('\n'), ['KEY', 'NAME', 'UP', 'DOWN', 'TOTAL', 'TUNNELS', 'REFUSED', 'FAILURES']);
    assert.match(row(rows, /customer-1/) ?? '', new RegExp(`^ *${keyId}  customer-1 .* KiB +${mine.tunnels} +0 +0$`));

    const devices = await okJson(['usage', '--by', 'device', '--since', '1h']);
    assert.ok(devices.usage.some((d: { id: number; bytesDown: number }) => d.id === deviceId && d.bytesDown >= mine.bytesDown));

    const series = await okJson(['usage', 'key', String(keyId), '--step', 'hour', '--since', '1h']);
    assert.equal(series.step, 'hour');
    const { id: _id, name: _name, ...counts } = mine;
    assert.deepEqual(series.total, counts, 'the series adds up to the total');
    const seriesTable = await ok(['usage', 'key', String(keyId), '--since', '1h']);
    assert.match(seriesTable, new RegExp(`^usage of key ${keyId} by hour from `));
    assert.match(seriesTable, new RegExp(`\\ntotal +[\\d.]+ \\S+ +[\\d.]+ \\S+ +[\\d.]+ \\S+ +${mine.tunnels} +0 +0\\n$`));
    const daily = await okJson(['usage', 'device', String(deviceId), '--step', 'day']);
    assert.equal(daily.series.length >= 30, true, 'day steps over the default 30 days');
  });

  test('rotate: the old secret is refused, the new one works; rm cuts its open tunnel', async () => {
    const out = await ok(['keys', 'rotate', String(keyId), '--proxy-host', '127.0.0.1', '--http-port', String(gw.ports.http), '--socks-port', String(gw.ports.socks)]);
    const fresh = /\nsecret \(shown this once, only its SHA-256 is stored\): (\S+)\n/.exec(out)?.[1];
    assert.ok(fresh && fresh !== secret, out);
    assert.match(out, /^rotated key \d+ "customer-1" -> device \d+/);
    const old = await curl(['-x', `http://${secret}:${secret}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
    assert.equal(old.httpCode, 407, 'the old secret is refused');
    const curlLine = out.split('\n').find((l) => l.includes('--socks5'))!;
    assert.equal((await runPrintedCurl(curlLine, `http://127.0.0.1:${web.port}/`)).httpCode, 200);

    const tunnel = await openTunnel(gw.ports.http, fresh, echo.port);
    const closed = new Promise<void>((resolve) => tunnel.once('close', () => resolve()));
    tunnel.on('error', () => {});
    const rm = await ok(['keys', 'rm', String(keyId)]);
    assert.match(rm, /^deleted: key [0-9a-f]{10}, 1 open tunnel\(s\) closed\n$/);
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the tunnel stayed open after keys rm')), 5_000))]);
    const after = await curl(['-x', `http://${fresh}:${fresh}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
    assert.equal(after.httpCode, 407, 'a deleted key is refused');
    const gone = await tailgate(['keys', 'show', String(keyId)]);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr, `tailgate: id: no key ${keyId} (404 not_found)\n`);
  });

  test('pools create, ls and show; a pool key carries traffic', async () => {
    const explicit = await okJson(['pools', 'create', 'listed', '--devices', String(deviceId)]);
    assert.deepEqual([explicit.devices, explicit.selector], [[deviceId], null]);
    const out = await ok(['pools', 'create', 'german', '--selector', 'country=de']);
    assert.match(out, /^created pool \d+\nid: +\d+\nname: +german\nmembers: +labels country=de\n/);
    const rows = assertTable(await ok(['pools', 'ls']), ['ID', 'NAME', 'MEMBERS', 'CREATED']);
    assert.match(row(rows, /listed/) ?? '', new RegExp(`listed  devices ${deviceId} `));
    assert.match(row(rows, /german/) ?? '', /german  labels country=de /);
    const german = (await okJson<any[]>(['pools', 'ls'])).find((p) => p.name === 'german');
    const shown = await ok(['pools', 'show', String(german.id)]);
    assert.match(shown, new RegExp(`\\n\\n *ID  NAME .*\\n *${deviceId}  phone-b `), 'show lists the members as devices ls does');

    const key = await okJson(['keys', 'create', '--pool', String(german.id)]);
    const r = await curl(['--socks5-hostname', `${key.key}:${key.key}@127.0.0.1:${gw.ports.socks}`, `http://127.0.0.1:${web.port}/`]);
    assert.equal(r.httpCode, 200, r.stderr);
    const off = await okJson(['keys', 'edit', String(key.id), '--disable', '--name', 'pooled', '--expires', '30d']);
    assert.deepEqual([off.disabled, off.name], [true, 'pooled']);
    assert.ok(Math.abs(Date.parse(off.expiresAt) - (Date.now() + 30 * 86_400_000)) < 60_000, off.expiresAt);
    assert.match(await ok(['keys', 'show', String(key.id)]), /\nstate: +disabled\n/);
    const refused = await curl(['-x', `http://${key.key}:${key.key}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
    assert.equal(refused.httpCode, 407, 'a disabled key is refused');
    const on = await okJson(['keys', 'edit', String(key.id), '--enable', '--expires', 'never']);
    assert.deepEqual([on.disabled, on.expiresAt], [false, null]);
    const busy = await tailgate(['pools', 'rm', String(german.id)]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /^tailgate: id: pool \d+ is the target of (1 key|a key) \(409 conflict\)\n$/);
    assert.match(await ok(['pools', 'rm', String(explicit.id)]), /deleted/);
  });

  test('enroll takes the URL `tailscale up` prints: without Headscale the API refuses it and the message is shown', async () => {
    const key = 'hskey-authreq-CLIENROLLTEST000000000001';
    const direct = await adminCall(gw.ports.api, TOKEN, 'POST', '/register', { key });
    assert.ok(direct.status >= 400, JSON.stringify(direct.json));
    const r = await tailgate(['enroll', `https://headscale.example.com/register/${key}`]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `tailgate: ${direct.json.message} (${direct.status} ${direct.json.error})\n`);

    // With --ip the same URL binds the key at its end: it then works as a proxy key.
    await ok(['enroll', `http://headscale.example.com/register/${key}?x=1`, '--ip', '127.0.0.1', '--port', String(device.port)]);
    const through = await curl(['-x', `http://${key}:${key}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`]);
    assert.equal(through.httpCode, 200, through.stderr);
  });

  test('a wrong or missing token, or no API, exits 1 with the message', async () => {
    const wrong = await tailgate(['devices', 'ls'], { TAILGATE_ADMIN_TOKEN: 'not-the-admin-token-at-all' });
    assert.deepEqual(wrong, { code: 1, stdout: '', stderr: 'tailgate: Authorization: invalid token (401 unauthorized)\n' });
    const missing = await tailgate(['keys', 'ls'], { TAILGATE_ADMIN_TOKEN: '' });
    assert.deepEqual(missing, { code: 1, stdout: '', stderr: 'tailgate: Authorization: missing; send Authorization: Bearer <token> (401 unauthorized)\n' });
    const port = await closedPort();
    const down = await tailgate(['pools'], { TAILGATE_API_URL: `http://127.0.0.1:${port}` });
    assert.equal(down.code, 1);
    assert.match(down.stderr, new RegExp(`^tailgate: cannot reach the API at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
    const viaFlag = await tailgate(['--api-url', `http://127.0.0.1:${gw.ports.api}`, 'pools'], { TAILGATE_API_URL: `http://127.0.0.1:${port}` });
    assert.equal(viaFlag.code, 0, '--api-url wins over the variable');
  });

  test('usage errors exit 2 and say what was wrong', async () => {
    const cases: [string[], RegExp][] = [
      [['bogus'], /unknown command 'bogus'/],
      [['keys', 'ls', '--bogus'], /unknown option '--bogus'/],
      [['devices', 'show'], /missing required argument 'id'/],
      [['keys', 'limits', '1', '--quota', '10GiB'], /expected a size and a period: 10GiB\/month/],
      [['keys', 'limits', '1', '--down', 'fast'], /expected a size such as/],
      [['keys', 'limits', '1', '--clear', 'speed'], /expected one of: max-tunnels, rate, burst, down, up, quota, all/],
      [['keys', 'limits', '1', '--up', '1MiB', '--clear', 'up'], /--up is both set and cleared/],
      [['keys', 'create'], /give --device <id> or --pool <id>/],
      [['keys', 'create', '--device', '1', '--pool', '2'], /cannot be used with option '--pool/],
      [['devices', 'edit', '1', '--enable', '--disable'], /cannot be used with option '--disable'/],
      [['devices', 'edit', '1'], /nothing to change/],
      [['usage', '--since', 'yesterday'], /expected a duration/],
      [['usage', '--by', 'pool'], /Allowed choices are key, device/],
      [[], /usage: tailgate \[options\] \[command\]/],
    ];
    for (const [args, message] of cases) {
      const r = await tailgate(args);
      assert.equal(r.code, 2, `tailgate ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, `tailgate ${args.join(' ')}`);
      assert.equal(r.stdout, '');
    }
  });
});

/** Every command of the program, as the words that name it. */
function commandPaths(command: Command, prefix: string[] = []): { path: string[]; subcommands: string[] }[] {
  const subcommands = command.commands.map((c) => c.name());
  return [{ path: prefix, subcommands }, ...command.commands.flatMap((c) => commandPaths(c, [...prefix, c.name()]))];
}

test('--help of every command exits 0, shows its usage and names its subcommands', { timeout: 120_000 }, async () => {
  const paths = commandPaths(buildProgram());
  assert.ok(paths.length >= 25, `${paths.length} commands`);
  for (const { path: words, subcommands } of paths) {
    const r = await new Promise<Run>((resolve) =>
      execFile(process.execPath, [BIN, ...words, '--help'], { cwd: repoRoot, env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
      ),
    );
    const name = ['tailgate', ...words].join(' ');
    assert.equal(r.code, 0, `${name} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^usage: ${name} `), name);
    for (const sub of subcommands) assert.match(r.stdout, new RegExp(`\\n  ${sub}\\b`), `${name} --help names ${sub}`);
    assert.ok(r.stdout.split('\n')[2]!.length > 10, `${name} has a description`);
  }
});

interface Served {
  output(): string;
  exited: Promise<number | null>;
  stop(): Promise<number | null | 'timeout'>;
}

const serveEnv = (dataDir: string, extra: Record<string, string> = {}) => ({
  PATH: process.env.PATH ?? '',
  TAILGATE_DATA_DIR: dataDir,
  TAILGATE_LISTEN_HOST: '127.0.0.1',
  TAILGATE_HTTP_PORT: '0',
  TAILGATE_SOCKS_PORT: '0',
  TAILGATE_API_PORT: '0',
  TAILGATE_ALLOW_CIDRS: '127.0.0.0/8',
  ...extra,
});

function watch(child: ReturnType<typeof spawn>, stop: () => void): Served {
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    output: () => out,
    exited,
    async stop() {
      stop();
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000))]);
      if (code === 'timeout') child.kill('SIGKILL');
      return code;
    },
  };
}

test('serve, piped: JSON lines only, reachable, SIGTERM exits 0', { timeout: 120_000 }, async () => {
  const data = await createTempDir('tailgate-cli-serve');
  const child = spawn(process.execPath, [BIN, 'serve'], { cwd: repoRoot, env: serveEnv(data.dir), stdio: ['ignore', 'pipe', 'pipe'] });
  const served = watch(child, () => child.kill('SIGTERM'));
  try {
    await waitFor('tailgate listening', 60_000, () => served.output().includes('tailgate listening'), 20);
    const lines = served.output().trimEnd().split('\n');
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
    const listening = JSON.parse(lines.find((l) => l.includes('tailgate listening'))!);
    const apiPort = Number(String(listening.api).split(':').pop());
    const health = await fetch(`http://127.0.0.1:${apiPort}/healthz`, { signal: AbortSignal.timeout(5_000) });
    assert.equal(health.status, 200);
    // The same binary as a client of it: no token configured, the API on loopback needs none.
    const devices = await tailgate(['devices', 'ls', '--json'], { TAILGATE_API_URL: `http://127.0.0.1:${apiPort}`, TAILGATE_ADMIN_TOKEN: '' });
    assert.deepEqual([devices.code, JSON.parse(devices.stdout)], [0, []]);
    assert.equal(await served.stop(), 0, served.output());
    for (const line of served.output().trimEnd().split('\n')) assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await data.remove();
  }
});

const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

test('serve on a terminal: coloured readable lines, then the three newcomer lines; the token nowhere; Ctrl-C exits 0', { timeout: 120_000 }, async () => {
  const data = await createTempDir('tailgate-cli-tty');
  // util-linux script gives the command a pseudo-terminal; -e returns its exit code. Ctrl-C is written to the terminal
  // as a person would type it, so the terminal sends SIGINT.
  const child = spawn('script', ['-qec', `exec ${quote(process.execPath)} ${quote(BIN)} serve`, '/dev/null'], {
    cwd: repoRoot,
    env: serveEnv(data.dir, { TAILGATE_ADMIN_TOKEN: TOKEN, TERM: 'xterm' }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const served = watch(child, () => child.stdin!.write('\x03'));
  try {
    await waitFor('the newcomer lines', 60_000, () => /first device: [^\n]*\n/.test(served.output()), 20).catch((err: Error) => {
      throw new Error(`${err.message}\n${served.output()}`);
    });
    const raw = served.output();
    assert.match(raw, /\x1b\[32mINFO\x1b\[39m/, 'coloured level names');
    const text = raw.replace(ANSI, '').replace(/\r/g, '');
    assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: tailgate listening$/m);
    assert.ok(!text.split('\n').some((l) => l.startsWith('{')), 'no JSON line on a terminal');
    const lines = text.split('\n');
    const at = lines.findIndex((l) => l.startsWith('proxies: '));
    assert.ok(at > lines.findIndex((l) => l.endsWith('INFO: tailgate listening')), 'the newcomer lines come after the start-up lines');
    const [proxies, api, first] = lines.slice(at, at + 3);
    const m = /^proxies: HTTP http:\/\/127\.0\.0\.1:(\d+) {2}SOCKS5 socks5:\/\/127\.0\.0\.1:(\d+)$/.exec(proxies!);
    assert.ok(m, proxies);
    const apiUrl = /^management API: (http:\/\/127\.0\.0\.1:\d+) \(OpenAPI at \1\/openapi\.json; tailgate --help for the command line\)$/.exec(api!)?.[1];
    assert.ok(apiUrl, api);
    assert.equal(first, `first device: curl -H "Authorization: Bearer $TAILGATE_ADMIN_TOKEN" -d '{"key":"<new proxy key>","ip":"<device tailnet IP>"}' ${apiUrl}/register`);
    assert.ok(!raw.includes(TOKEN), 'the admin token reached the output');

    // The addresses printed are the ones listening.
    const health = await fetch(`${apiUrl}/healthz`, { signal: AbortSignal.timeout(5_000) });
    assert.equal(health.status, 200);
    const r = await curl(['-x', `http://nobody-key:nobody-key@127.0.0.1:${m[1]}`, `http://127.0.0.1:${web.port}/`]);
    assert.equal(r.httpCode, 407, 'the HTTP proxy answers at the printed address');

    assert.equal(await served.stop(), 0, served.output());
    assert.ok(!served.output().includes(TOKEN));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await data.remove();
  }
});
