// The compatibility matrix: clients nobody here wrote (curl, wget, Python requests + PySocks, Go net/http +
// golang.org/x/net/proxy, undici, http-/https-/socks-proxy-agent, git, Chromium) through one real gateway on
// PostgreSQL, to local HTTP and HTTPS targets, egressing through a stand-in device (the third-party `proxy` package).
// Every success is checked twice: the body came from the target, and the device logged the request or CONNECT for it
// during that case (cases run one after another). Every client is also given a key the gateway does not know and must
// show the refusal its protocol defines (407 / a refused CONNECT / a SOCKS5 auth failure) with nothing reaching the
// device. A client missing from the machine fails its case with how to install it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import https from 'node:https';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { request as undiciRequest, ProxyAgent, Socks5ProxyAgent, type Dispatcher } from 'undici';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { SocksProxyAgent } from 'socks-proxy-agent';
import type { Browser, Page } from 'playwright-core';
import { startGateway, type Gateway } from '../src/app.js';
import { CHROMIUM, launchChromium } from './helpers/browser.js';
import { buildGoClient, requireClient, runClient, startTap, versionOf, type ClientRun } from './helpers/clients.js';
import { adminCall } from './helpers/connect-tunnel.js';
import { curl as runCurl } from './helpers/curl.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startHttpDevice, type Device } from './helpers/devices.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { gitEnv, startGitServer, type GitServer } from './helpers/git-server.js';
import { waitFor } from '../testbed/wait.js';
import { makeSelfSignedCert, startHttpsTarget, startHttpTarget, type Listening, type TlsMaterial } from './helpers/targets.js';

const TOKEN = 'clients-admin-token-0123456789';
const KEY = `Compat${randomBytes(12).toString('hex')}`;
/** Never registered: the gateway must refuse it on every listener. */
const UNKNOWN = `Unknown${randomBytes(12).toString('hex')}`;
const PYTHON = '/usr/bin/python3';
const PYTHON_CLIENT = path.resolve('test', 'clients', 'requests_get.py');
const PYTHON_HINT = 'apt-get install -y python3-requests python3-socks (Debian packages; the test runs /usr/bin/python3)';

describe('real clients through one gateway', { timeout: 300_000 }, () => {
  let db: TestDatabase;
  let dataDir: { dir: string; remove(): Promise<void> };
  let tls: TlsMaterial;
  let device: Device;
  let httpTarget: Listening;
  let httpsTarget: Listening;
  let gw: Gateway;

  before(async () => {
    [db, dataDir, tls] = await Promise.all([createTestDatabase('clients'), createTempDir('tailgate-clients'), makeSelfSignedCert()]);
    [device, httpTarget, httpsTarget] = await Promise.all([startHttpDevice(), startHttpTarget(), startHttpsTarget(tls)]);
    gw = await startGateway(loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_DATA_DIR: dataDir.dir }), pino({ level: 'silent' }));
    const reg = await adminCall(gw.ports.api, TOKEN, 'POST', '/register', { key: KEY, ip: '127.0.0.1', port: device.port, name: 'compat-device' });
    assert.equal(reg.status, 201, JSON.stringify(reg.json));
  });

  after(async () => {
    await gw?.close();
    await Promise.all([device?.close(), httpTarget?.close(), httpsTarget?.close()]);
    await Promise.all([db?.drop(), dataDir?.remove(), tls?.remove()]);
  });

  const httpProxy = (key = KEY) => `http://${key}:${key}@127.0.0.1:${gw.ports.http}`;
  const socksProxy = (scheme: 'socks5' | 'socks5h', key = KEY) => `${scheme}://${key}:${key}@127.0.0.1:${gw.ports.socks}`;
  /** A plain-HTTP URL to the target's echo, naming the case, so the device's log shows exactly this request. */
  const plainUrl = (name: string) => `http://127.0.0.1:${httpTarget.port}/echo?case=${name}`;
  /** HTTPS on 127.0.0.1 (through CONNECT or SOCKS with an address); `localhost` shows a name going through unresolved. */
  const secureUrl = (name: string, host = '127.0.0.1') => `https://${host}:${httpsTarget.port}/${name}`;
  const SECURE_BODY = 'hello from https 127.0.0.1\n';
  const connectOf = (url: string) => `CONNECT ${new URL(url).host}`;

  /** Runs one client case; the device must have logged `expected` (a request line or a CONNECT) while it ran. */
  async function viaDevice<T>(expected: string, run: () => Promise<T>): Promise<T> {
    const from = device.seen.length;
    const result = await run();
    const seen = device.seen.slice(from);
    assert.ok(seen.includes(expected), `the device did not see "${expected}" during this case; it saw ${JSON.stringify(seen)}`);
    return result;
  }

  /** Runs one refused client case: nothing may reach the device. */
  async function refused<T>(run: () => Promise<T>): Promise<T> {
    const from = device.seen.length;
    const result = await run();
    assert.deepEqual(device.seen.slice(from), [], 'a client with an unknown key reached the device');
    return result;
  }

  /**
   * The target's echo of a request to `url`: it came from the target; forwarded, it carries the Via header the device
   * adds (tunnelled, the device only relays bytes); the key never reaches the target.
   */
  function echoed(body: string, url: string, how: 'forwarded' | 'tunnelled'): void {
    const echo = JSON.parse(body) as { target: string; url: string; headers: Record<string, string> };
    assert.equal(echo.target, 'http 127.0.0.1');
    const { pathname, search } = new URL(url);
    assert.equal(echo.url, pathname + search);
    assert.equal(echo.headers['proxy-authorization'], undefined, 'Proxy-Authorization reached the target');
    assert.ok(!body.includes(KEY), 'the key reached the target');
    if (how === 'forwarded') assert.match(echo.headers.via ?? '', /\(proxy\/[\d.]+\)$/, "the device's Via header is missing");
    else assert.equal(echo.headers.via, undefined, 'a tunnelled request was rewritten on the way');
  }

  const ok = (r: ClientRun, what: string) => assert.equal(r.exitCode, 0, `${what} failed (exit ${r.exitCode}):\n${r.stderr}\n${r.stdout}`);

  describe('curl', () => {
    const curl = async (args: string[]) => {
      await requireClient('curl', 'apt-get install -y curl');
      return runCurl(args);
    };

    test('HTTP proxy, plain request', async () => {
      const url = plainUrl('curl-plain');
      const r = await viaDevice(`GET ${url}`, () => curl(['-x', httpProxy(), url]));
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.httpCode, 200);
      echoed(r.stdout, url, 'forwarded');
    });

    test('HTTP proxy, CONNECT to an HTTPS target', async () => {
      const url = secureUrl('curl-connect');
      const r = await viaDevice(connectOf(url), () => curl(['-x', httpProxy(), '--cacert', tls.certFile, url]));
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.connectCode, 200);
      assert.equal(r.stdout, SECURE_BODY);
    });

    test('HTTP proxy, CONNECT forced for a plain-HTTP target (--proxytunnel)', async () => {
      const url = plainUrl('curl-tunnel');
      const r = await viaDevice(connectOf(url), () => curl(['-x', httpProxy(), '--proxytunnel', url]));
      assert.equal(r.exitCode, 0, r.stderr);
      echoed(r.stdout, url, 'tunnelled');
    });

    test('SOCKS5 (--socks5: curl resolves, sends an address)', async () => {
      const url = secureUrl('curl-socks5');
      const r = await viaDevice(connectOf(url), () => curl(['--socks5', `${KEY}:${KEY}@127.0.0.1:${gw.ports.socks}`, '--cacert', tls.certFile, url]));
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, SECURE_BODY);
    });

    test('SOCKS5 with the name resolved at the egress (--socks5-hostname / socks5h://)', async () => {
      const url = secureUrl('curl-socks5h', 'localhost');
      const r = await viaDevice(connectOf(url), () => curl(['-x', socksProxy('socks5h'), '--cacert', tls.certFile, url]));
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, SECURE_BODY);
    });

    test('an unknown key: 407 with Proxy-Authenticate (plain and CONNECT), SOCKS5 auth failure', async () => {
      const plain = await refused(() => curl(['-x', httpProxy(UNKNOWN), plainUrl('curl-unknown')]));
      assert.equal(plain.httpCode, 407);
      assert.equal(plain.headers['proxy-authenticate'], 'Basic realm="tailgate"');
      assert.equal(plain.headers['x-tailgate-error'], 'auth');
      const tunnel = await refused(() => curl(['-x', httpProxy(UNKNOWN), '--cacert', tls.certFile, secureUrl('curl-unknown')]));
      assert.equal(tunnel.exitCode, 56, tunnel.stderr);
      assert.equal(tunnel.connectCode, 407);
      const socks = await refused(() => curl(['-x', socksProxy('socks5h', UNKNOWN), plainUrl('curl-unknown')]));
      assert.equal(socks.exitCode, 97, socks.stderr);
      assert.match(socks.stderr, /User was rejected by the SOCKS5 server/);
    });
  });

  describe('wget (HTTP proxy only: wget has no SOCKS support)', () => {
    const wget = async (proxy: string, url: string) => {
      await requireClient('wget', 'apt-get install -y wget');
      return runClient('wget', ['-nv', '-O', '-', '--tries=1', '--timeout=10', '-e', 'use_proxy=yes', '-e', `http_proxy=${proxy}`, '-e', `https_proxy=${proxy}`, `--ca-certificate=${tls.certFile}`, url]);
    };

    test('HTTP proxy, plain request', async () => {
      const url = plainUrl('wget-plain');
      const r = await viaDevice(`GET ${url}`, () => wget(httpProxy(), url));
      ok(r, 'wget');
      echoed(r.stdout, url, 'forwarded');
    });

    test('HTTP proxy, CONNECT to an HTTPS target', async () => {
      const url = secureUrl('wget-connect');
      const r = await viaDevice(connectOf(url), () => wget(httpProxy(), url));
      ok(r, 'wget');
      assert.equal(r.stdout, SECURE_BODY);
    });

    test('an unknown key: 407 (plain and CONNECT)', async () => {
      const plain = await refused(() => wget(httpProxy(UNKNOWN), plainUrl('wget-unknown')));
      assert.equal(plain.exitCode, 8, plain.stderr);
      assert.match(plain.stderr, /ERROR 407: Proxy Authentication Required/);
      const tunnel = await refused(() => wget(httpProxy(UNKNOWN), secureUrl('wget-unknown')));
      assert.equal(tunnel.exitCode, 4, tunnel.stderr);
      assert.match(tunnel.stderr, /Proxy tunneling failed: Proxy Authentication Required/);
    });
  });

  describe('Python requests + PySocks', () => {
    interface PyAnswer {
      status?: number;
      body?: string;
      error?: string;
      type?: string;
    }
    let pythonReady: Promise<void> | undefined;
    async function python(proxy: string, url: string): Promise<PyAnswer> {
      await (pythonReady ??= (async () => {
        await requireClient(PYTHON, PYTHON_HINT);
        const probe = await runClient(PYTHON, ['-c', 'import requests, socks']);
        assert.equal(probe.exitCode, 0, `${PYTHON} cannot import requests and socks: ${PYTHON_HINT}\n${probe.stderr}`);
      })());
      const r = await runClient(PYTHON, [PYTHON_CLIENT, proxy, url, tls.certFile]);
      assert.equal(r.exitCode, 0, `${PYTHON} ${PYTHON_CLIENT} failed (exit ${r.exitCode}): ${r.stderr}`);
      return JSON.parse(r.stdout) as PyAnswer;
    }


    test('HTTP proxy, plain request', async () => {
      const url = plainUrl('python-plain');
      const r = await viaDevice(`GET ${url}`, () => python(httpProxy(), url));
      assert.equal(r.status, 200, JSON.stringify(r));
      echoed(r.body ?? '', url, 'forwarded');
    });

    test('HTTP proxy, CONNECT to an HTTPS target', async () => {
      const url = secureUrl('python-connect');
      const r = await viaDevice(connectOf(url), () => python(httpProxy(), url));
      assert.deepEqual(r, { status: 200, body: SECURE_BODY });
    });

    test('SOCKS5 (socks5://: Python resolves, sends an address)', async () => {
      const url = secureUrl('python-socks5');
      const r = await viaDevice(connectOf(url), () => python(socksProxy('socks5'), url));
      assert.deepEqual(r, { status: 200, body: SECURE_BODY });
    });

    test('SOCKS5 with the name resolved at the egress (socks5h://)', async () => {
      const url = secureUrl('python-socks5h', 'localhost');
      const r = await viaDevice(connectOf(url), () => python(socksProxy('socks5h'), url));
      assert.deepEqual(r, { status: 200, body: SECURE_BODY });
    });

    test('an unknown key: 407 (plain), a refused tunnel (CONNECT), SOCKS5 auth failure', async () => {
      const plain = await refused(() => python(httpProxy(UNKNOWN), plainUrl('python-unknown')));
      assert.equal(plain.status, 407, JSON.stringify(plain));
      const tunnel = await refused(() => python(httpProxy(UNKNOWN), secureUrl('python-unknown')));
      assert.equal(tunnel.type, 'ProxyError', JSON.stringify(tunnel));
      assert.match(tunnel.error ?? '', /Tunnel connection failed: 407 Proxy Authentication Required/);
      const socks = await refused(() => python(socksProxy('socks5h', UNKNOWN), plainUrl('python-unknown')));
      assert.equal(socks.type, 'ConnectionError', JSON.stringify(socks));
      assert.match(socks.error ?? '', /SOCKS5 authentication failed/);
    });
  });

  describe('Go net/http + golang.org/x/net/proxy', () => {
    // Built on first use (a minute on a cold module cache), so a failed build fails each Go case with its message.
    let client: Promise<string> | undefined;
    const go = async (proxy: string, url: string, socks: 'xnet' | 'nethttp' = 'xnet') =>
      runClient(await (client ??= buildGoClient()), ['-proxy', proxy, '-url', url, '-cacert', tls.certFile, '-socks', socks]);

    test('HTTP proxy (http.ProxyURL), plain request', async () => {
      const url = plainUrl('go-plain');
      const r = await viaDevice(`GET ${url}`, () => go(httpProxy(), url));
      ok(r, 'the Go client');
      assert.match(r.stdout, /^200 OK\n/);
      echoed(r.stdout.slice('200 OK\n'.length), url, 'forwarded');
    });

    test('HTTP proxy (http.ProxyURL), CONNECT to an HTTPS target', async () => {
      const url = secureUrl('go-connect');
      const r = await viaDevice(connectOf(url), () => go(httpProxy(), url));
      ok(r, 'the Go client');
      assert.equal(r.stdout, `200 OK\n${SECURE_BODY}`);
    });

    test('SOCKS5 (x/net/proxy, names sent unresolved)', async () => {
      const url = secureUrl('go-socks5', 'localhost');
      const r = await viaDevice(connectOf(url), () => go(socksProxy('socks5'), url));
      ok(r, 'the Go client');
      assert.equal(r.stdout, `200 OK\n${SECURE_BODY}`);
    });

    test("SOCKS5 (net/http's own client, as with HTTPS_PROXY=socks5://…)", async () => {
      const url = secureUrl('go-nethttp-socks5', 'localhost');
      const r = await viaDevice(connectOf(url), () => go(socksProxy('socks5'), url, 'nethttp'));
      ok(r, 'the Go client');
      assert.equal(r.stdout, `200 OK\n${SECURE_BODY}`);
    });

    test('an unknown key: 407 (plain and CONNECT), SOCKS5 auth failure (both SOCKS5 clients)', async () => {
      const plain = await refused(() => go(httpProxy(UNKNOWN), plainUrl('go-unknown')));
      ok(plain, 'the Go client');
      assert.match(plain.stdout, /^407 Proxy Authentication Required\n/);
      const tunnel = await refused(() => go(httpProxy(UNKNOWN), secureUrl('go-unknown')));
      assert.equal(tunnel.exitCode, 1);
      assert.match(tunnel.stderr, /^Get "https:[^"]+": Proxy Authentication Required$/m);
      for (const client of ['xnet', 'nethttp'] as const) {
        const socks = await refused(() => go(socksProxy('socks5', UNKNOWN), plainUrl('go-unknown'), client));
        assert.equal(socks.exitCode, 1, client);
        assert.match(socks.stderr, /socks connect .*: username\/password authentication failed/, client);
      }
    });
  });

  describe("Node: undici's ProxyAgent and Socks5ProxyAgent", () => {
    async function get(dispatcher: Dispatcher, url: string): Promise<{ status: number; body: string }> {
      try {
        const res = await undiciRequest(url, { dispatcher, signal: AbortSignal.timeout(10_000) });
        return { status: res.statusCode, body: await res.body.text() };
      } finally {
        await dispatcher.close();
      }
    }
    const tunnelAgent = (key = KEY) => new ProxyAgent({ uri: httpProxy(key), requestTls: { ca: tls.cert } });

    test('ProxyAgent, CONNECT to an HTTPS target', async () => {
      const url = secureUrl('undici-connect');
      assert.deepEqual(await viaDevice(connectOf(url), () => get(tunnelAgent(), url)), { status: 200, body: SECURE_BODY });
    });

    test('ProxyAgent, CONNECT for a plain-HTTP target (its default)', async () => {
      const url = plainUrl('undici-tunnel');
      const r = await viaDevice(connectOf(url), () => get(tunnelAgent(), url));
      assert.equal(r.status, 200);
      echoed(r.body, url, 'tunnelled');
    });

    test('ProxyAgent with proxyTunnel: false, plain request', async () => {
      const url = plainUrl('undici-plain');
      const agent = new ProxyAgent({ uri: httpProxy(), proxyTunnel: false });
      const r = await viaDevice(`GET ${url}`, () => get(agent, url));
      assert.equal(r.status, 200);
      echoed(r.body, url, 'forwarded');
    });

    test('Socks5ProxyAgent', async () => {
      const url = secureUrl('undici-socks5', 'localhost');
      // requestTls (the target's TLS settings) is read by undici 7's Socks5ProxyAgent but missing from its types.
      const agent = new Socks5ProxyAgent(socksProxy('socks5'), { requestTls: { ca: tls.cert } } as Socks5ProxyAgent.Options);
      assert.deepEqual(await viaDevice(connectOf(url), () => get(agent, url)), { status: 200, body: SECURE_BODY });
    });

    test('an unknown key: a refused tunnel, 407 (plain), SOCKS5 auth failure', async () => {
      await refused(() => assert.rejects(get(tunnelAgent(UNKNOWN), secureUrl('undici-unknown')), /Proxy response \(407\) !== 200 when HTTP Tunneling/));
      // Without a tunnel undici turns the proxy's 407 into an error of its own rather than a response.
      const plain = new ProxyAgent({ uri: httpProxy(UNKNOWN), proxyTunnel: false });
      await refused(() => assert.rejects(get(plain, plainUrl('undici-unknown')), /Proxy Authentication Required \(407\)/));
      await refused(() => assert.rejects(get(new Socks5ProxyAgent(socksProxy('socks5', UNKNOWN)), plainUrl('undici-unknown')), { name: 'Socks5ProxyError', message: 'Authentication failed' }));
    });
  });

  describe('Node: http-proxy-agent, https-proxy-agent, socks-proxy-agent', () => {
    /** One GET with node:http(s) and `agent`; `ca` trusts the test certificate for HTTPS targets. */
    function get(url: string, agent: http.Agent): Promise<{ status: number; body: string }> {
      const mod = url.startsWith('https:') ? https : http;
      return new Promise((resolve, reject) => {
        const req = mod.get(url, { agent, ca: tls.cert, timeout: 10_000 }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
        req.on('error', reject);
      }).finally(() => agent.destroy()) as Promise<{ status: number; body: string }>;
    }

    test('http-proxy-agent, plain request', async () => {
      const url = plainUrl('http-proxy-agent');
      const r = await viaDevice(`GET ${url}`, () => get(url, new HttpProxyAgent(httpProxy())));
      assert.equal(r.status, 200);
      echoed(r.body, url, 'forwarded');
    });

    test('https-proxy-agent, CONNECT to an HTTPS target', async () => {
      const url = secureUrl('https-proxy-agent');
      assert.deepEqual(await viaDevice(connectOf(url), () => get(url, new HttpsProxyAgent(httpProxy()))), { status: 200, body: SECURE_BODY });
    });

    test('socks-proxy-agent, socks5:// (resolved here) and socks5h:// (resolved at the egress)', async () => {
      const resolved = secureUrl('socks-proxy-agent');
      assert.deepEqual(await viaDevice(connectOf(resolved), () => get(resolved, new SocksProxyAgent(socksProxy('socks5')))), { status: 200, body: SECURE_BODY });
      const named = secureUrl('socks-proxy-agent-h', 'localhost');
      assert.deepEqual(await viaDevice(connectOf(named), () => get(named, new SocksProxyAgent(socksProxy('socks5h')))), { status: 200, body: SECURE_BODY });
    });

    test('an unknown key: 407 (plain), a refused tunnel (CONNECT), SOCKS5 auth failure', async () => {
      const plain = await refused(() => get(plainUrl('http-proxy-agent-unknown'), new HttpProxyAgent(httpProxy(UNKNOWN))));
      assert.equal(plain.status, 407);
      // https-proxy-agent replays a refused CONNECT's answer to the request as if the target had sent it.
      const tunnel = await refused(() => get(secureUrl('https-proxy-agent-unknown'), new HttpsProxyAgent(httpProxy(UNKNOWN))));
      assert.equal(tunnel.status, 407);
      await refused(() => assert.rejects(get(plainUrl('socks-proxy-agent-unknown'), new SocksProxyAgent(socksProxy('socks5h', UNKNOWN))), { message: 'Socks5 Authentication failed' }));
    });
  });

  describe('git over the HTTP proxy (git http-backend on loopback)', () => {
    let home: { dir: string; remove(): Promise<void> };
    let server: Promise<GitServer> | undefined;
    /** The git server, started on first use once git is known to be there, so a missing git fails each case with the hint. */
    const gitServer = () => (server ??= requireClient('git', 'apt-get install -y git').then(() => startGitServer(tls)));
    const repoUrl = async (scheme: 'http' | 'https') => {
      const g = await gitServer();
      return `${scheme}://127.0.0.1:${g[scheme].port}/${g.repo}`;
    };
    const clone = (proxy: string, url: string, into: string) =>
      runClient('git', ['-c', `http.proxy=${proxy}`, '-c', `http.sslCAInfo=${tls.certFile}`, 'clone', '-q', url, path.join(home.dir, into)], {
        env: gitEnv(home.dir),
        timeoutMs: 30_000,
      });
    const cloned = async (into: string) => {
      const g = await gitServer();
      assert.equal(await readFile(path.join(home.dir, into, g.file), 'utf8'), g.content);
    };

    before(async () => {
      home = await createTempDir('tailgate-git-client');
    });
    after(async () => {
      await (await server?.catch(() => undefined))?.close();
      await home?.remove();
    });

    test('clone over plain HTTP (the forwarder)', async () => {
      const url = await repoUrl('http');
      const r = await viaDevice(`GET ${url}/info/refs?service=git-upload-pack`, () => clone(httpProxy(), url, 'plain'));
      ok(r, 'git clone');
      await cloned('plain');
      assert.ok(device.seen.includes(`POST ${url}/git-upload-pack`), 'the pack request went through the device');
    });

    test('clone over HTTPS (CONNECT)', async () => {
      const url = await repoUrl('https');
      const r = await viaDevice(connectOf(url), () => clone(httpProxy(), url, 'tunnel'));
      ok(r, 'git clone');
      await cloned('tunnel');
    });

    test('clone over SOCKS5 (http.proxy=socks5h://, the name resolved at the egress)', async () => {
      const url = (await repoUrl('http')).replace('127.0.0.1', 'localhost');
      const r = await viaDevice(connectOf(url), () => clone(socksProxy('socks5h'), url, 'socks'));
      ok(r, 'git clone');
      await cloned('socks');
    });

    test('an unknown key: the clone fails with 407 (plain and CONNECT) and a SOCKS5 auth failure', async () => {
      const plainUrl = await repoUrl('http');
      const plain = await refused(() => clone(httpProxy(UNKNOWN), plainUrl, 'refused-plain'));
      assert.equal(plain.exitCode, 128, plain.stderr);
      assert.match(plain.stderr, /The requested URL returned error: 407/);
      const tunnelUrl = await repoUrl('https');
      const tunnel = await refused(() => clone(httpProxy(UNKNOWN), tunnelUrl, 'refused-tunnel'));
      assert.equal(tunnel.exitCode, 128, tunnel.stderr);
      assert.match(tunnel.stderr, /CONNECT tunnel failed, response 407/);
      const socks = await refused(() => clone(socksProxy('socks5h', UNKNOWN), plainUrl, 'refused-socks'));
      assert.equal(socks.exitCode, 128, socks.stderr);
      assert.match(socks.stderr, /User was rejected by the SOCKS5 server/);
    });
  });

  describe('Chromium (headless, --proxy-server), proxy auth answered through the DevTools protocol', () => {
    /** Chromium bypasses proxies for loopback targets unless told not to; the test's targets are on loopback. */
    const proxyArgs = (server: string) => [`--proxy-server=${server}`, '--proxy-bypass-list=<-loopback>', `--ignore-certificate-errors-spki-list=${spki}`];
    let spki: string;
    let browser: Browser | undefined;

    before(async () => {
      // Trusts exactly the test certificate (its public key's SHA-256), not every certificate.
      const der = createPublicKey(tls.cert).export({ type: 'spki', format: 'der' });
      spki = createHash('sha256').update(der).digest('base64');
    });
    after(() => browser?.close());

    interface Challenge {
      source: string;
      scheme: string;
      realm: string;
    }

    /**
     * A page whose proxy auth challenges are answered over CDP: Fetch.enable with handleAuthRequests, then every
     * Fetch.authRequired answered with Fetch.continueWithAuth. `answer` picks the credentials for the n-th challenge of a
     * request (null cancels it, as a user closing the dialog would).
     */
    async function authPage(answer: (attempt: number) => { username: string; password: string } | null): Promise<{ page: Page; challenges: Challenge[] }> {
      const context = await browser!.newContext();
      const page = await context.newPage();
      page.setDefaultNavigationTimeout(15_000);
      const cdp = await context.newCDPSession(page);
      const challenges: Challenge[] = [];
      const attempts = new Map<string, number>();
      cdp.on('Fetch.requestPaused', (e) => void cdp.send('Fetch.continueRequest', { requestId: e.requestId }).catch(() => {}));
      cdp.on('Fetch.authRequired', (e) => {
        challenges.push({ source: e.authChallenge.source ?? '', scheme: e.authChallenge.scheme, realm: e.authChallenge.realm });
        const attempt = (attempts.get(e.requestId) ?? 0) + 1;
        attempts.set(e.requestId, attempt);
        const credentials = answer(attempt);
        void cdp
          .send('Fetch.continueWithAuth', {
            requestId: e.requestId,
            authChallengeResponse: credentials === null ? { response: 'CancelAuth' } : { response: 'ProvideCredentials', ...credentials },
          })
          .catch(() => {});
      });
      await cdp.send('Fetch.enable', { handleAuthRequests: true, patterns: [{ urlPattern: '*' }] });
      return { page, challenges };
    }

    test('HTTP proxy: the Basic challenge answered with the key, plain and CONNECT', async () => {
      browser = await launchChromium(proxyArgs(`http://127.0.0.1:${gw.ports.http}`));
      const { page, challenges } = await authPage((attempt) => (attempt === 1 ? { username: KEY, password: KEY } : null));
      const url = plainUrl('chromium-plain');
      const res = await viaDevice(`GET ${url}`, () => page.goto(url));
      assert.equal(res?.status(), 200);
      echoed(await res!.text(), url, 'forwarded');
      assert.deepEqual(challenges[0], { source: 'Proxy', scheme: 'basic', realm: 'tailgate' });
      const secure = secureUrl('chromium-connect');
      const tunnel = await viaDevice(connectOf(secure), () => page.goto(secure));
      assert.equal(tunnel?.status(), 200);
      assert.equal(await tunnel!.text(), SECURE_BODY);
      // Chromium keeps the accepted credentials for the proxy and sends them unasked from then on.
      assert.equal(challenges.length, 1, JSON.stringify(challenges));
      await page.context().close();
    });

    test('HTTP proxy, an unknown key: challenged again, then the 407 page (plain) and a failed tunnel (CONNECT)', async () => {
      browser ??= await launchChromium(proxyArgs(`http://127.0.0.1:${gw.ports.http}`));
      const { page, challenges } = await authPage((attempt) => (attempt === 1 ? { username: UNKNOWN, password: UNKNOWN } : null));
      const plain = await refused(() => page.goto(plainUrl('chromium-unknown')));
      assert.equal(plain?.status(), 407);
      assert.ok(challenges.length >= 2, `the wrong key was not challenged again: ${JSON.stringify(challenges)}`);
      // Over CONNECT Chromium never shows the proxy's page for an https URL: the navigation fails instead.
      const asked = challenges.length;
      await refused(() => assert.rejects(page.goto(secureUrl('chromium-unknown')), /net::ERR_HTTP_RESPONSE_CODE_FAILURE/));
      assert.ok(challenges.length >= asked + 2, `the wrong key was not challenged again over CONNECT: ${JSON.stringify(challenges)}`);
      await page.context().close();
    });

    test('SOCKS5 proxy: Chromium offers only "no authentication", so the gateway refuses it (no SOCKS5 auth in Chromium)', async () => {
      await browser?.close();
      // Chromium is pointed at a tap in front of the SOCKS5 listener, to show what it offered and what it was told.
      const tap = await startTap(gw.ports.socks);
      try {
        browser = await launchChromium(proxyArgs(`socks5://127.0.0.1:${tap.port}`));
        const page = await (await browser.newContext()).newPage();
        await refused(() => assert.rejects(page.goto(plainUrl('chromium-socks5'), { timeout: 15_000 }), /net::ERR_SOCKS_CONNECTION_FAILED/));
        // Chromium may open more than one connection (a retry, a preconnect): judge each once it has ended.
        await waitFor('every connection through the tap to end', 10_000, () => tap.exchanges.every((e) => e.closed));
        const spoken = tap.exchanges.filter((e) => e.client.length > 0);
        assert.ok(spoken.length > 0, `Chromium never spoke SOCKS5 to the listener (${tap.exchanges.length} connections)`);
        for (const { client, server } of spoken) {
          assert.equal(client.toString('hex'), '050100', 'greeting: SOCKS5, one method, "no authentication required"');
          assert.equal(server.toString('hex'), '05ff', 'answer: no acceptable method (RFC 1928)');
        }
      } finally {
        await tap.close();
      }
    });
  });

  test('every client hung up cleanly: no client connection or tunnel left open on the gateway', async () => {
    const connections = (server: net.Server) => new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    await waitFor('the gateway to hold no client connection', 10_000, async () => (await connections(gw.httpProxy)) + (await connections(gw.socksProxy)) === 0);
    assert.equal(gw.tunnels.size, 0);
  });

  test('the version of every client in the matrix is reported', async (t) => {
    const npmVersion = async (name: string) => `${name} ${JSON.parse(await readFile(path.resolve('node_modules', name, 'package.json'), 'utf8')).version}`;
    const versions = await Promise.all([
      versionOf('curl', ['--version']),
      versionOf('wget', ['--version']),
      versionOf(PYTHON, ['-c', 'import platform, requests, socks; print("Python", platform.python_version(), "requests", requests.__version__, "PySocks", socks.__version__)']),
      versionOf('go', ['version']),
      versionOf('git', ['--version']),
      versionOf(CHROMIUM, ['--version']),
      ...['undici', 'http-proxy-agent', 'https-proxy-agent', 'socks-proxy-agent', 'playwright-core'].map(npmVersion),
    ]);
    for (const v of versions) {
      assert.match(v, /\d+\.\d+/, `no version in "${v}"`);
      t.diagnostic(v);
    }
  });
});
