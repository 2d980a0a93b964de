// HeadscaleRegistrar against a real headscale (the pinned v0.29.3) with a real device waiting for approval, in a
// private network namespace. Covers what POST /register maps to statuses: approval, retry, unknown key, malformed
// key, the pre-0.29 id format, a wrong API key or user, an unreachable Headscale, and node deletion.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { HeadscaleRegistrar, registrationKeyFormat } from '../src/headscale/client.js';
import { RegistrarError, type RegistrarFailure } from '../src/headscale/types.js';
import { createLogger } from '../src/log.js';
import { createTempDir } from './helpers/db.js';
import { defineNetnsRun } from './helpers/netns-run.js';
import { CONTROL_IP, HEADSCALE_URL, TailnetScene, type SceneDevice } from '../testbed/tailnet-scene.js';
import { requireTailnetTools } from '../testbed/tailnet-tools.js';

const thisFile = fileURLToPath(import.meta.url);
const TIMEOUT_MS = 5 * 60_000;

async function rejectsWith(promise: Promise<unknown>, kind: RegistrarFailure, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RegistrarError, `a RegistrarError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    assert.match(err.message, message);
    return true;
  });
}

test('registration key formats', () => {
  assert.equal(registrationKeyFormat('hskey-authreq-Vc22yhGiGwLBZCJFXz_BjYCK'), 'auth-id');
  assert.equal(registrationKeyFormat('D5D0R2gwvodpIKhEyZ4lrFVO'), 'legacy');
  for (const bad of ['', 'hskey-authreq-short', 'D5D0R2gwvodpIKhEyZ4lrFV', 'hskey-auth-Vc22yhGiGwLBZCJFXz_BjYCK', 'D5D0R2gwvodp IKhEyZ4lrFVO', 'hskey-authreq-Vc22yhGiGwLBZCJFXz_BjYCK\n']) {
    assert.equal(registrationKeyFormat(bad), null, JSON.stringify(bad));
  }
});

if (defineNetnsRun(thisFile, 'HeadscaleRegistrar against headscale v0.29', TIMEOUT_MS)) {
  describe('HeadscaleRegistrar against a real headscale', { timeout: TIMEOUT_MS }, () => {
    const log = createLogger('silent');
    let tmp: { dir: string; remove(): Promise<void> };
    let scene: TailnetScene;
    let device: SceneDevice;
    let registrar: HeadscaleRegistrar;
    let approvedId = '';

    before(async () => {
      tmp = await createTempDir('tailgate-hs');
      scene = await TailnetScene.start(await requireTailnetTools(), tmp.dir);
      device = await scene.addDevice('device-h', 1);
      registrar = new HeadscaleRegistrar({ url: HEADSCALE_URL, apiKey: scene.apiKey, user: scene.user, timeoutMs: 5_000 }, log);
    });
    after(async () => {
      await scene?.close();
      await tmp?.remove();
    });

    test('approves the pending device and returns its node id, name and addresses', async () => {
      const approved = await registrar.approve(device.registrationKey);
      const ips = await scene.deviceIps(device);
      assert.equal(approved.ipv4, ips.find((ip) => ip.includes('.')));
      assert.equal(approved.ipv6, ips.find((ip) => ip.includes(':')));
      assert.equal(approved.name, 'device-h');
      const node = (await scene.nodes()).find((n) => n.name === 'device-h');
      assert.equal(approved.headscaleNodeId, node?.id);
      approvedId = approved.headscaleNodeId;
    });

    test('approving the same key again answers with the same device (Headscale itself has forgotten the key)', async () => {
      assert.deepEqual(await registrar.approve(device.registrationKey), await registrar.approve(device.registrationKey));
      const fresh = new HeadscaleRegistrar({ url: HEADSCALE_URL, apiKey: scene.apiKey, user: scene.user, timeoutMs: 5_000 }, log);
      await rejectsWith(fresh.approve(device.registrationKey), 'not-found', /registration cache/);
    });

    test('an unknown key is not-found with the reason Headscale gives', async () => {
      await rejectsWith(registrar.approve(`hskey-authreq-${'A'.repeat(24)}`), 'not-found', /node not found in registration cache/);
    });

    test('a malformed key is bad-key; a pre-0.29 id reaches Headscale by the old endpoint, which 0.29 rejects as bad-key', async () => {
      await rejectsWith(registrar.approve('hskey-authreq-tooshort'), 'bad-key', /^key: /);
      await rejectsWith(registrar.approve('D5D0R2gwvodpIKhEyZ4lrFVO'), 'bad-key', /invalid prefix/);
    });

    test('a wrong API key or user is an upstream error naming the setting', async () => {
      const key = `hskey-authreq-${'B'.repeat(24)}`;
      const wrongKey = new HeadscaleRegistrar({ url: HEADSCALE_URL, apiKey: 'hskey-api-not-a-real-key', user: scene.user, timeoutMs: 5_000 }, log);
      await rejectsWith(wrongKey.approve(key), 'upstream', /HEADSCALE_API_KEY/);
      // The user is looked up before the key, so an unknown user is reported whatever the key.
      const wrongUser = new HeadscaleRegistrar({ url: HEADSCALE_URL, apiKey: scene.apiKey, user: 'nobody', timeoutMs: 5_000 }, log);
      await rejectsWith(wrongUser.approve(key), 'upstream', /no user named "nobody".*HEADSCALE_USER/);
    });

    test('an unreachable Headscale is unreachable, quickly', async () => {
      const nowhere = new HeadscaleRegistrar({ url: `http://${CONTROL_IP}:1`, apiKey: scene.apiKey, user: scene.user, timeoutMs: 2_000 }, log);
      const started = Date.now();
      await rejectsWith(nowhere.approve(`hskey-authreq-${'C'.repeat(24)}`), 'unreachable', /ECONNREFUSED/);
      assert.ok(Date.now() - started < 2_000);
    });

    test('deleteNode removes the node from Headscale, and deleting it again is not an error', async () => {
      assert.ok(approvedId);
      await registrar.deleteNode(approvedId);
      assert.ok(!(await scene.nodes()).some((n) => n.id === approvedId));
      await registrar.deleteNode(approvedId);
      await rejectsWith(registrar.deleteNode('../1'), 'bad-key', /node id/);
    });

    test('the API key never shows up in what the registrar logs', async () => {
      const lines: string[] = [];
      const captured = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
      const r = new HeadscaleRegistrar({ url: HEADSCALE_URL, apiKey: scene.apiKey, user: scene.user, timeoutMs: 5_000 }, captured);
      await r.approve(`hskey-authreq-${'D'.repeat(24)}`).catch(() => undefined);
      const text = lines.join('');
      assert.match(text, /Headscale approvals enabled/);
      assert.ok(!text.includes(scene.apiKey));
    });
  });
}
