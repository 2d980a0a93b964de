// Faults in the real tailnet scene (testbed/tailnet-scene.ts): tailgate's tailscaled killed again and again under
// load, and two gateways on one PostgreSQL and one tailnet (approval on one usable on both, revocation on one cutting
// tunnels on the other, one killed and restarted while the other serves).
//
// Run as root: the file re-runs itself inside a private network namespace. TAILGATE_FAULTS_CRASHES (default 10) sets
// how many times tailscaled is killed; TAILGATE_FAULTS_SEED replays the moments of an earlier run (it is printed).
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createTempDir, createTestDatabase } from '../helpers/db.js';
import { curl, type CurlResult } from '../helpers/curl.js';
import { defineNetnsRun, sceneSteps } from '../helpers/netns-run.js';
import { rng } from '../helpers/random.js';
import { LineTunnel, startEcho, startWhoami } from '../helpers/tailnet-clients.js';
import { TunnelLoad, type Attempt, type LoadTarget } from '../helpers/tunnel-load.js';
import { SceneGateway } from '../../testbed/tailnet-gateway.js';
import { CONTROL_IP, TailnetScene, type SceneDevice } from '../../testbed/tailnet-scene.js';
import { requireTailnetTools } from '../../testbed/tailnet-tools.js';
import { waitFor } from '../../testbed/wait.js';

const thisFile = fileURLToPath(import.meta.url);
const SCENE_TIMEOUT_MS = 20 * 60_000;
const CONNECT_TIMEOUT_MS = 8_000;
const CRASHES = Number(process.env.TAILGATE_FAULTS_CRASHES ?? '10');
/** A connection while tailscaled is down must be answered within this (a refusal, not a timeout). */
const FAST_FAIL_MS = 3_000;
/** Open descriptors of tailgate, idle, after the crashes versus before them. */
const FD_SLACK = 6;
/** RSS growth allowed across the crashes, over the lowest idle sample (garbage collection timing alone moves it by several MiB). */
const RSS_GROWTH_BYTES = 32 * 1024 * 1024;

const inside = defineNetnsRun(thisFile, 'tailnet faults', SCENE_TIMEOUT_MS, async () => {
  const db = await createTestDatabase('tnfault');
  return { env: { TAILGATE_E2E_DATABASE: db.name }, teardown: () => db.drop() };
});

if (inside) {
  describe('tailnet faults (inside the namespace)', { timeout: SCENE_TIMEOUT_MS }, () => {
    const seed = process.env.TAILGATE_FAULTS_SEED ? Number(process.env.TAILGATE_FAULTS_SEED) : randomInt(2 ** 31);
    const adminToken = randomBytes(24).toString('hex');
    const enrollToken = randomBytes(24).toString('hex');
    let tmp: { dir: string; remove(): Promise<void> };
    let scene: TailnetScene;
    let gw1: SceneGateway;
    let gw2: SceneGateway;
    let a: SceneDevice;
    let b: SceneDevice;
    let whoami: Awaited<ReturnType<typeof startWhoami>>;
    let echo: Awaited<ReturnType<typeof startEcho>>;
    let nodeIdA = 0;
    /** Key A's tunnel through gateway 2, open from approval to its revocation on gateway 1. */
    let aTunnelOnGw2: LineTunnel | undefined;
    const tunnels: LineTunnel[] = [];

    const viaHttp = (gw: SceneGateway, key: string, url: string, extra: string[] = []) =>
      curl(['-x', `http://${key}:${key}@127.0.0.1:${gw.opts.ports.http}`, ...extra, url], 30_000);
    const viaSocks = (gw: SceneGateway, key: string, url: string) => curl(['-x', `socks5h://${key}:${key}@127.0.0.1:${gw.opts.ports.socks}`, url], 30_000);
    const remoteOf = (r: CurlResult) => {
      assert.equal(r.exitCode, 0, `curl failed: ${r.stderr} ${r.headers['x-tailgate-error'] ?? ''}`);
      assert.match(r.stdout, /^\{/, `not the destination's answer: ${r.stdout}`);
      return (JSON.parse(r.stdout) as { remote: string }).remote;
    };
    const openLine = async (gw: SceneGateway, key: string) => {
      const t = await LineTunnel.open(gw.opts.ports.http, key, `${CONTROL_IP}:${echo.port}`);
      tunnels.push(t);
      return t;
    };
    const note = (line: string) => process.stderr.write(`${line}\n`);

    const { step, diagnose } = sceneSteps(() => scene?.diagnostics(Object.fromEntries([gw1, gw2].filter(Boolean).map((g) => [g.name, g.socket]))));

    before(async () => {
      note(`tailnet faults: seed ${seed} (TAILGATE_FAULTS_SEED=${seed} replays it), ${CRASHES} crashes`);
      const tools = await requireTailnetTools();
      tmp = await createTempDir('tailgate-faults');
      scene = await TailnetScene.start(tools, tmp.dir);
      try {
        const database = process.env.TAILGATE_E2E_DATABASE;
        assert.ok(database, 'TAILGATE_E2E_DATABASE is set by the outer test');
        whoami = await startWhoami(CONTROL_IP);
        echo = await startEcho(CONTROL_IP);
        [a, b] = await Promise.all([scene.addDevice('device-a', 1), scene.addDevice('device-b', 2)]);
        const common = { database, adminToken, enrollToken, connectTimeoutMs: CONNECT_TIMEOUT_MS };
        gw1 = new SceneGateway(scene, { ...common, name: 'tailgate-1', ports: { http: 8081, socks: 1080, api: 9091 } });
        gw2 = new SceneGateway(scene, { ...common, name: 'tailgate-2', ports: { http: 8082, socks: 1082, api: 9092 } });
        await Promise.all([gw1.start(), gw2.start()]);
      } catch (err) {
        await diagnose();
        throw err;
      }
    });

    after(async () => {
      for (const t of tunnels) t.close();
      await Promise.all([gw1?.stop().catch(() => gw1.kill()), gw2?.stop().catch(() => gw2.kill())]);
      whoami?.server.close();
      echo?.server.close();
      await scene?.close();
      if (process.env.TAILGATE_E2E_KEEP !== '1') await tmp?.remove();
    });

    step('two gateways on one database joined the tailnet as two nodes', async () => {
      const names = (await scene.nodes()).map((n) => n.name).sort();
      assert.deepEqual(names, ['tailgate-1', 'tailgate-2']);
      assert.notEqual(gw1.tailscaledPid(), gw2.tailscaledPid());
    });

    step('a device approved through gateway 1 is usable through both gateways at once; one approved through gateway 2 through gateway 1', async () => {
      const res = await gw1.api('POST', '/register', { key: a.registrationKey });
      assert.equal(res.status, 201, JSON.stringify(res.json));
      nodeIdA = (res.json.node as { id: number }).id;
      await scene.deviceIps(a);
      // Gateway 2 did not approve A, so it warmed nothing up: its first connection is the one to time.
      let started = Date.now();
      assert.equal(remoteOf(await viaHttp(gw2, a.registrationKey, `${whoami.url}/gw2-first`, ['-p'])), a.addr);
      const gw2FirstMs = Date.now() - started;
      started = Date.now();
      assert.equal(remoteOf(await viaHttp(gw1, a.registrationKey, `${whoami.url}/gw1-first`, ['-p'])), a.addr);
      const gw1FirstMs = Date.now() - started;

      // Both at once: a tunnel through each gateway, open together, each answering through A.
      const [t1, t2] = await Promise.all([openLine(gw1, a.registrationKey), openLine(gw2, a.registrationKey)]);
      assert.deepEqual(await Promise.all([t1.ask('via-1'), t2.ask('via-2')]), [`${a.addr} via-1`, `${a.addr} via-2`]);
      for (const gw of [gw1, gw2]) assert.equal(remoteOf(await viaSocks(gw, a.registrationKey, `${whoami.url}/${gw.name}-socks`)), a.addr);
      t1.close();
      aTunnelOnGw2 = t2;

      const resB = await gw2.api('GET', `/registerV2/${b.registrationKey}`, undefined, { authorization: `Bearer ${enrollToken}` });
      assert.equal(resB.status, 201, JSON.stringify(resB.json));
      await scene.deviceIps(b);
      started = Date.now();
      assert.equal(remoteOf(await viaHttp(gw1, b.registrationKey, `${whoami.url}/b-gw1`, ['-p'])), b.addr);
      const bOnGw1Ms = Date.now() - started;
      assert.equal(remoteOf(await viaSocks(gw1, b.registrationKey, `${whoami.url}/b-gw1-socks`)), b.addr);
      assert.equal(remoteOf(await viaHttp(gw2, b.registrationKey, `${whoami.url}/b-gw2`)), b.addr);
      note(`two gateways: first CONNECT through A ${gw1FirstMs} ms on the approving gateway, ${gw2FirstMs} ms on the other; B (approved on 2) first through 1 ${bOnGw1Ms} ms`);
    });

    step(`tailscaled killed ${CRASHES} times under load: connections fail fast while it is down and flow again after; no descriptor or memory growth`, async () => {
      const random = rng(seed);
      const target = (via: 'http' | 'socks5'): LoadTarget => ({
        via,
        port: via === 'http' ? gw1.opts.ports.http : gw1.opts.ports.socks,
        key: b.registrationKey,
        host: CONTROL_IP,
        echoPort: echo.port,
        expectFrom: b.addr,
      });
      const load = new TunnelLoad([target('http'), target('socks5'), target('http'), target('socks5')], {
        deadlineMs: 20_000,
        failurePauseMs: 50,
        successPauseMs: 10,
      });
      const idleSample = async () => {
        await load.pause();
        // Let closed connections finish closing on the gateway's side before counting its descriptors.
        await sleep(500);
        const sample = { fds: gw1.fdCount(), rss: gw1.rssBytes() };
        load.resume();
        return sample;
      };
      const rounds: { killAt: number; probeMs: [number, number]; readyMs: number; flowingMs: number; refused: number; cut: number }[] = [];
      const samples: { fds: number; rss: number }[] = [];
      try {
        // Warm-up: the first tunnels allocate what every later one reuses (pools, buffers, JIT).
        await sleep(4_000);
        samples.push(await idleSample());
        for (let i = 1; i <= CRASHES; i++) {
          await sleep(1_500 + Math.floor(random() * 3_500));
          const pid = gw1.tailscaledPid();
          assert.ok(pid, `crash ${i}: tailgate-1's tailscaled runs`);
          const killAt = Date.now();
          process.kill(pid, 'SIGKILL');
          // Real curl on both listeners, at once: refused with the tailnet's reason, in far less than a timeout.
          const timed = async (run: () => Promise<CurlResult>): Promise<[CurlResult, number]> => {
            const t0 = Date.now();
            const r = await run();
            return [r, Date.now() - t0];
          };
          const [[http, httpMs], [socks, socksMs]] = await Promise.all([
            timed(() => viaHttp(gw1, b.registrationKey, `${whoami.url}/down-${i}`, ['-p'])),
            timed(() => viaSocks(gw1, b.registrationKey, `${whoami.url}/down-${i}`)),
          ]);
          assert.equal(http.connectCode, 503, `crash ${i}: CONNECT while tailscaled is down: ${http.connectCode} ${http.stderr}`);
          assert.equal(http.headers['x-tailgate-error'], 'network-down');
          assert.equal(socks.exitCode, 97, `crash ${i}: SOCKS5 while tailscaled is down: ${socks.stderr}`);
          assert.match(socks.stderr, /\(3\)|network unreachable/i);
          assert.ok(httpMs < FAST_FAIL_MS && socksMs < FAST_FAIL_MS, `crash ${i}: answered in ${httpMs} ms (HTTP) and ${socksMs} ms (SOCKS5)`);

          await waitFor(`crash ${i}: a new tailscaled`, 30_000, () => {
            const now = gw1.tailscaledPid();
            return now !== undefined && now !== pid ? true : undefined;
          }, 50);
          await waitFor(`crash ${i}: /readyz back to 200`, 90_000, async () => ((await gw1.readyStatus()) === 200 ? true : undefined), 50);
          const readyMs = Date.now() - killAt;
          const firstOk = await waitFor(`crash ${i}: a tunnel through the load after the restart`, 60_000, () => load.attempts.find((x) => x.start > killAt && x.outcome.kind === 'ok'), 50);
          assert.equal(remoteOf(await viaHttp(gw1, b.registrationKey, `${whoami.url}/up-${i}`, ['-p'])), b.addr, `crash ${i}: CONNECT after the restart`);
          assert.equal(remoteOf(await viaSocks(gw1, b.registrationKey, `${whoami.url}/up-${i}`)), b.addr, `crash ${i}: SOCKS5 after the restart`);
          const during = load.between(killAt, firstOk.start);
          rounds.push({
            killAt,
            probeMs: [httpMs, socksMs],
            readyMs,
            flowingMs: firstOk.end - killAt,
            refused: during.filter((x) => x.outcome.kind === 'refused').length,
            cut: load.between(killAt - 30_000, firstOk.start).filter((x) => x.outcome.kind === 'cut').length,
          });
          samples.push(await idleSample());
        }
      } finally {
        await load.stop();
      }

      for (const [i, r] of rounds.entries()) {
        note(`crash ${i + 1}: refusals in ${r.probeMs[0]} / ${r.probeMs[1]} ms (HTTP / SOCKS5 curl), load refused ${r.refused}, cut ${r.cut}; /readyz 200 after ${r.readyMs} ms, tunnels flowing after ${r.flowingMs} ms; idle fds ${samples[i + 1]!.fds}, RSS ${(samples[i + 1]!.rss / 2 ** 20).toFixed(1)} MiB`);
      }
      const all = load.attempts;
      const count = (kind: string) => all.filter((x) => x.outcome.kind === kind).length;
      const longestOk = Math.max(...all.filter((x) => x.outcome.kind === 'ok').map((x) => x.end - x.start));
      note(`load: ${all.length} attempts, ${count('ok')} ok (longest ${longestOk} ms), ${count('refused')} refused, ${count('cut')} cut, ${count('timeout')} timed out; baseline fds ${samples[0]!.fds}, RSS ${(samples[0]!.rss / 2 ** 20).toFixed(1)} MiB`);

      // Every failure of the load is the gateway's own exact answer, given fast: never a timeout, never a silent close.
      const describeAttempt = (x: Attempt) => `${x.via} +${x.start - rounds[0]!.killAt} ms: ${JSON.stringify(x.outcome)} after ${x.end - x.start} ms`;
      const timeouts = all.filter((x) => x.outcome.kind === 'timeout');
      assert.deepEqual(timeouts.map(describeAttempt), [], 'no attempt waited for its deadline');
      const silent = all.filter((x) => x.outcome.kind === 'cut' && x.outcome.stage === 'handshake');
      assert.deepEqual(silent.map(describeAttempt), [], 'no handshake was closed without an answer');
      // The one slow answer allowed: a dial made into the new tailscaled's first WireGuard handshake when that handshake
      // and its retry 5 s later are both lost runs into the connect timeout. That is the network, answered exactly
      // (504 `timeout` / SOCKS5 0x06 at the timeout), only within a crash's recovery and rarely; never a hang.
      const inRecovery = (x: Attempt) => rounds.some((r, i) => x.start >= r.killAt && x.start < (rounds[i + 1]?.killAt ?? Infinity) && x.start < r.killAt + r.flowingMs + CONNECT_TIMEOUT_MS);
      const atConnectTimeout = (x: Attempt) => x.end - x.start >= CONNECT_TIMEOUT_MS - 500 && x.end - x.start < CONNECT_TIMEOUT_MS + 2_000;
      let slowInRecovery = 0;
      for (const x of all) {
        if (x.outcome.kind !== 'refused') continue;
        const { status, reason } = x.outcome;
        const timedOut = x.via === 'http' ? status === 504 && reason === 'timeout' : reason === 'socks5 reply' && status === 6;
        if (timedOut && atConnectTimeout(x) && inRecovery(x)) {
          slowInRecovery++;
          continue;
        }
        if (x.via === 'http') assert.ok(status === 503 && reason === 'network-down', `HTTP refusal: ${describeAttempt(x)}`);
        else assert.ok(reason === 'socks5 reply' && status === 3, `SOCKS5 refusal: ${describeAttempt(x)}`);
        // Counted from the kill for an attempt whose dial was already waiting in tailscaled when it died: the wait
        // before the kill is the dial's, not the failure's.
        const killedBefore = rounds.filter((r) => r.killAt <= x.end).at(-1)?.killAt ?? x.start;
        assert.ok(x.end - Math.max(x.start, killedBefore) < FAST_FAIL_MS, `refused fast: ${describeAttempt(x)}`);
      }
      note(`load: ${slowInRecovery} dial(s) answered at the connect timeout during a recovery (lost WireGuard handshakes)`);
      assert.ok(slowInRecovery <= CRASHES / 2, `${slowInRecovery} dials ran into the connect timeout during recoveries`);
      // A tunnel cut mid-echo is one tailscaled was carrying when it died: only right after a kill.
      for (const x of all) {
        if (x.outcome.kind !== 'cut') continue;
        assert.ok(rounds.some((r) => x.end >= r.killAt && x.end < r.killAt + 5_000), `a tunnel cut away from any crash: ${describeAttempt(x)}`);
      }
      assert.ok(rounds.every((r) => r.refused > 0), 'the load met every down time');

      const base = samples[0]!;
      const last = samples.at(-1)!;
      assert.ok(last.fds <= base.fds + FD_SLACK, `descriptors: ${samples.map((s) => s.fds).join(' → ')} (baseline ${base.fds} + ${FD_SLACK})`);
      // Against the lowest sample before the last: the warm-up's baseline can be high until the first full collection.
      const lowest = Math.min(...samples.slice(0, -1).map((s) => s.rss));
      assert.ok(last.rss <= lowest + RSS_GROWTH_BYTES, `RSS: ${samples.map((s) => (s.rss / 2 ** 20).toFixed(1)).join(' → ')} MiB`);
      assert.equal(gw1.tailscaledPids().length, 1, 'one tailscaled per gateway');
      assert.equal(await aTunnelOnGw2!.ask('after-crashes'), `${a.addr} after-crashes`, "gateway 2's tunnel was untouched");
    });

    step("a revocation on gateway 1 cuts the key's open tunnel on gateway 2 and refuses it there", async () => {
      assert.equal(await aTunnelOnGw2!.ask('before-revoke'), `${a.addr} before-revoke`);
      const res = await gw1.api('DELETE', `/nodes/${nodeIdA}`);
      assert.equal(res.status, 200, JSON.stringify(res.json));
      const started = Date.now();
      assert.equal(await aTunnelOnGw2!.waitClosed(3_000), true, "gateway 2 cut the key's tunnel");
      const cutMs = Date.now() - started;
      const http = await viaHttp(gw2, a.registrationKey, `${whoami.url}/revoked`, ['-p']);
      assert.equal(http.connectCode, 407, http.stderr);
      const socks = await viaSocks(gw2, a.registrationKey, `${whoami.url}/revoked`);
      assert.equal(socks.exitCode, 97, socks.stderr);
      note(`revocation on gateway 1: tunnel on gateway 2 cut ${cutMs} ms after the API answered`);
    });

    step('gateway 1 killed: gateway 2 keeps serving; gateway 1 restarts on its node and serves again', async () => {
      const nodeBefore = (await scene.nodes()).find((n) => n.name === 'tailgate-1');
      assert.ok(nodeBefore);
      const held = await openLine(gw2, b.registrationKey);
      assert.equal(await held.ask('before-kill'), `${b.addr} before-kill`);

      await gw1.kill();
      assert.equal(await held.ask('gw1-dead'), `${b.addr} gw1-dead`, "gateway 2's open tunnel goes on");
      assert.equal(remoteOf(await viaHttp(gw2, b.registrationKey, `${whoami.url}/gw1-dead`, ['-p'])), b.addr);
      assert.equal(remoteOf(await viaSocks(gw2, b.registrationKey, `${whoami.url}/gw1-dead`)), b.addr);
      const refused = await viaHttp(gw1, b.registrationKey, `${whoami.url}/gw1-dead`);
      assert.equal(refused.exitCode, 7, 'nothing listens on the killed gateway');
      const orphans = gw1.tailscaledPids().length;

      const started = Date.now();
      await gw1.start();
      const restartMs = Date.now() - started;
      assert.equal(gw1.tailscaledPids().length, 1, 'exactly one tailscaled for gateway 1 after its restart');
      const nodesAfter = (await scene.nodes()).filter((n) => n.name === 'tailgate-1');
      assert.deepEqual(nodesAfter.map((n) => n.id), [nodeBefore.id], 'gateway 1 is the same tailnet node (its state directory kept the node key)');
      assert.equal(remoteOf(await viaHttp(gw1, b.registrationKey, `${whoami.url}/gw1-back`, ['-p'])), b.addr);
      assert.equal(remoteOf(await viaSocks(gw1, b.registrationKey, `${whoami.url}/gw1-back`)), b.addr);
      assert.equal(await held.ask('gw1-back'), `${b.addr} gw1-back`);
      note(`gateway 1 killed (${orphans} tailscaled left running by it), restarted and ready in ${restartMs} ms as the same node ${nodeBefore.id}`);
    });

    step('no secret reached either log; SIGTERM stops both gateways with their tailscaleds', async () => {
      for (const gw of [gw1, gw2]) {
        const log = gw.log();
        assert.ok(log.includes('tailgate listening'), `${gw.name}'s log was captured`);
        for (const secret of [scene.preAuthKey, scene.apiKey, adminToken, enrollToken, a.registrationKey, b.registrationKey]) {
          assert.ok(!log.includes(secret), `a secret appears in ${gw.name}'s log`);
        }
        const pid = gw.tailscaledPid();
        assert.ok(pid);
        assert.ok(!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(scene.preAuthKey));
      }
      // No tunnel left open, so neither waits out its shutdown grace.
      for (const t of tunnels) t.close();
      assert.deepEqual(await Promise.all([gw1.stop(), gw2.stop()]), [0, 0]);
      assert.deepEqual([...gw1.tailscaledPids(), ...gw2.tailscaledPids()], [], 'no tailscaled left behind');
    });
  });
}
