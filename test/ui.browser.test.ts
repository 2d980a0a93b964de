// The web dashboard in real Chromium against a real gateway (PostgreSQL, a stand-in HTTP device on 127.0.0.2, curl as
// the customer): signing in and out, a wrong token refused, a device registered through the API appearing, a key
// created in the UI working at once through both listeners and its traffic in its chart after a flush, revocation from
// the UI cutting an open tunnel, pools and enrollment, keyboard use and a phone's width. Every page is checked for
// console errors; every test saves a screenshot under test-results/ui/ so a failure can be seen.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { Gateway } from '../src/app.js';
import { waitFor } from '../testbed/wait.js';
import { launchChromium, screenshot, SCREENSHOTS, signIn, watchedPage, type WatchedPage } from './helpers/browser.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { curl } from './helpers/curl.js';
import type { Device } from './helpers/devices.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { GatewayScene } from './helpers/gateway-scene.js';
import { ScriptedRegistrar } from './helpers/registrar.js';
import type { EchoTarget, Listening } from './helpers/targets.js';

const TOKEN = 'test-admin-token-ui-0123456789abcdef';

let scene: GatewayScene;
let gw: Gateway;
let device: Device;
let web: Listening;
let echo: EchoTarget;
let browser: Browser;
let context: BrowserContext;
let base = '';
let deviceId = 0;
/** The secret of the key the UI created, for the rotation test after it. */
let createdSecret = '';
const registrar = new ScriptedRegistrar();

const api = (method: string, path: string, body?: unknown) => adminCall(gw.ports.api, TOKEN, method, path, body);

/** A page in the shared browser; at the end of the test, a screenshot and no console error. */
async function open(t: TestContext, name: string, allowed: RegExp[] = []): Promise<Page> {
  const w: WatchedPage = await watchedPage(context);
  t.after(async () => {
    await screenshot(w.page, name).catch(() => undefined);
    await w.page.close();
    // Chromium reports every failed fetch as a console error; a test that provokes an API error names it.
    const unexpected = w.problems.filter((p) => !allowed.some((a) => a.test(p)));
    assert.deepEqual(unexpected, [], `${name}: console errors`);
  });
  return w.page;
}

/** The status Chromium logs for a fetch that failed with it. */
const failedFetch = (status: number) => new RegExp(`^console: Failed to load resource: the server responded with a status of ${status} `);

before(async () => {
  scene = await GatewayScene.open({ label: 'ui', deviceHost: '127.0.0.2' });
  ({ device, web, echo } = scene);
  gw = await scene.startGateway(loopbackConfig(TOKEN, { DATABASE_URL: scene.db.url, TAILGATE_USAGE_FLUSH_MS: '200' }), { registrar });
  base = `http://127.0.0.1:${gw.ports.api}`;
  browser = scene.own('the browser', await launchChromium(), (b) => b.close());
  context = scene.own('the browser context', await browser.newContext({ viewport: { width: 1280, height: 800 } }), (c) => c.close());
});

after(() => scene?.close());

test('a wrong token is refused on the sign-in page, and without a token nothing but the sign-in page loads', async (t) => {
  const page = await open(t, 'wrong-token', [failedFetch(401)]);
  const calls: string[] = [];
  page.on('request', (r) => calls.push(new URL(r.url()).pathname));
  await page.goto(`${base}/ui/#/devices`);
  await page.getByLabel('Admin token').waitFor();
  assert.deepEqual(calls.filter((p) => !p.startsWith('/ui/')), [], 'no API call before signing in');
  await page.getByLabel('Admin token').fill('not-the-admin-token-at-all');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'Authorization: invalid token' }).waitFor();
  assert.equal(await page.getByRole('navigation', { name: 'Pages' }).count(), 0);
  assert.deepEqual(await page.evaluate('[sessionStorage.length, localStorage.length]'), [0, 0]);
  assert.ok(!(await page.content()).includes('not-the-admin-token-at-all'));
});

test('sign in: the overview shows devices, tunnels and the live chart; the token is in sessionStorage only', async (t) => {
  const page = await open(t, 'overview');
  await signIn(page, base, TOKEN);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.locator('.stats').waitFor();
  await page.locator('.chart canvas').first().waitFor();
  assert.equal(await page.evaluate('localStorage.length'), 0, 'nothing in localStorage');
  assert.equal(await page.evaluate("sessionStorage.getItem('tailgate.adminToken')"), TOKEN);
});

test('a device registered through the API appears in the devices table; labels edited on its page filter the table', async (t) => {
  const page = await open(t, 'devices');
  await signIn(page, base, TOKEN, '#/devices');
  await page.getByRole('heading', { name: 'Devices' }).waitFor();
  const r = await api('POST', '/register', { key: 'ui-device-key-00000001', ip: device.host, port: device.port, name: 'phone-a' });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  deviceId = (await api('GET', `/keys/${r.json.node.id}`)).json.target.device;
  const other = await api('POST', '/register', { key: 'ui-device-key-00000002', ip: '127.0.0.3', port: 9, name: 'phone-b' });
  assert.equal(other.status, 201, JSON.stringify(other.json));
  // The table refreshes by itself.
  const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: 'phone-a', exact: true }) });
  await row.waitFor();
  assert.match(await row.innerText(), /127\.0\.0\.2/);

  await row.getByRole('link', { name: 'phone-a' }).click();
  await page.getByRole('heading', { name: 'phone-a' }).waitFor();
  await page.getByRole('textbox', { name: /^Labels/ }).fill('country=de\nsite=berlin');
  await page.getByRole('button', { name: 'Save labels' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
  assert.deepEqual((await api('GET', `/devices/${deviceId}`)).json.labels, { country: 'de', site: 'berlin' });
  // The device's keys: the one it registered with.
  await page.getByRole('region', { name: 'Keys' }).getByRole('link').first().waitFor();

  await page.getByRole('link', { name: 'Devices' }).click();
  await page.getByRole('heading', { name: 'Devices' }).waitFor();
  await page.getByLabel('Label').selectOption('country=de');
  await page.getByText('1 of 2 devices').waitFor();
  assert.equal(await page.getByRole('link', { name: 'phone-b' }).count(), 0);
  await page.getByLabel('Label').selectOption('');
  await page.getByLabel('State').selectOption('up');
  await page.getByText(/of 2 devices/).waitFor();
});

test('a key created in the UI works at once with curl through both listeners; its secret is gone once the dialog closes; its traffic shows in its chart after a flush', async (t) => {
  assert.ok(deviceId > 0, 'needs the device of the test before');
  const page = await open(t, 'key-created');
  await signIn(page, base, TOKEN, '#/keys');
  await page.getByRole('button', { name: 'Create key…' }).click();
  const form = page.getByRole('dialog', { name: 'Create a key' });
  await form.getByLabel('Name').fill('customer-1');
  await form.getByLabel('Target').selectOption({ label: 'phone-a' });
  await form.getByRole('button', { name: 'Create key' }).click();

  const shown = page.getByRole('dialog', { name: /copy the secret now/ });
  await shown.waitFor();
  const secret = await shown.getByLabel('Secret').inputValue();
  assert.match(secret, /^[A-Za-z0-9]{32}$/);
  createdSecret = secret;
  await screenshot(page, 'key-secret-dialog');
  const lines = [await shown.getByLabel('HTTP proxy').inputValue(), await shown.getByLabel('SOCKS5').inputValue()];
  assert.equal(lines[0], `curl -x http://${secret}:${secret}@127.0.0.1:${gw.ports.http} https://example.com/`);
  assert.equal(lines[1], `curl --socks5-hostname ${secret}:${secret}@127.0.0.1:${gw.ports.socks} https://example.com/`);
  // The lines as shown, pointed at the local web target instead of example.com.
  let moved = 0;
  for (const line of lines) {
    const args = line.split(' ').slice(1, -1);
    const r = await curl([...args, `http://127.0.0.1:${web.port}/big?n=20000`]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.httpCode, 200);
    assert.equal(r.stdout.length, 20_000);
    moved += r.stdout.length;
  }

  await shown.getByRole('button', { name: 'Done, I have copied it' }).click();
  await shown.waitFor({ state: 'detached' });
  assert.ok(!(await page.content()).includes(secret), 'the secret is still in the page');
  const stored = await page.evaluate<string>('JSON.stringify([{ ...sessionStorage }, { ...localStorage }])');
  assert.ok(!stored.includes(secret), 'the secret is in web storage');

  const key = (await api('GET', '/keys')).json.find((k: { name: string }) => k.name === 'customer-1');
  await waitFor('the key\'s usage flushed', 5_000, async () => {
    const u = await api('GET', `/keys/${key.id}/usage`);
    return u.json.total.bytesDown >= moved;
  });
  const total = (await api('GET', `/keys/${key.id}/usage`)).json.total;
  await page.getByRole('link', { name: 'customer-1' }).click();
  await page.getByRole('heading', { name: 'customer-1' }).waitFor();
  const figure = page.locator('.total[data-bytes]');
  await figure.waitFor();
  assert.equal(Number(await figure.getAttribute('data-bytes')), total.bytesUp + total.bytesDown);
  assert.match(await figure.innerText(), /2 tunnels/);
  await page.getByRole('img', { name: /Bytes per hour/ }).locator('canvas').waitFor();
  await page.getByRole('button', { name: 'Daily (30 d)' }).click();
  await page.getByRole('img', { name: /Bytes per day/ }).waitFor();
  assert.equal(Number(await figure.getAttribute('data-bytes')), total.bytesUp + total.bytesDown);
  assert.ok(!(await page.content()).includes(secret));
});

test('a key\'s limits and quota set in the UI, with its usage bar; rotation shows the new secret once and refuses the old one', async (t) => {
  const page = await open(t, 'key-limits', [failedFetch(400)]);
  const key = (await api('GET', '/keys')).json.find((k: { name: string }) => k.name === 'customer-1');
  await signIn(page, base, TOKEN, `#/keys/${key.id}`);
  await page.getByRole('heading', { name: 'customer-1' }).waitFor();
  // A limit the API refuses is shown in place, naming the field.
  await page.getByLabel(/^Bytes per second down/).fill('10');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: 'body.limits.bytesPerSecondDown must be >= 1024' }).waitFor();
  await page.getByLabel(/^Bytes per second down/).fill('');
  await page.getByLabel(/^Max open tunnels/).fill('5');
  // The page refreshes the key every 5 s: what is being typed stays.
  await page.waitForResponse((r) => new URL(r.url()).pathname === `/keys/${key.id}` && r.request().method() === 'GET', { timeout: 10_000 });
  await page.waitForTimeout(100);
  assert.equal(await page.getByLabel(/^Max open tunnels/).inputValue(), '5');
  await page.getByLabel(/^Quota/).first().fill('10 MB');
  await page.getByLabel('Quota period').selectOption('day');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
  const limited = (await api('GET', `/keys/${key.id}`)).json;
  assert.deepEqual(limited.limits, { maxTunnels: 5, quota: { bytes: 10_000_000, period: 'day' } });
  await page.getByRole('progressbar', { name: 'Quota used' }).waitFor();
  assert.match(await page.locator('.facts .usagebar').innerText(), new RegExp(`of 10.0 MB`));

  const proxyArgs = (secret: string) => ['-x', `http://${secret}:${secret}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/`];
  await page.getByRole('button', { name: 'Rotate…' }).click();
  await page.getByRole('dialog', { name: 'Rotate customer-1?' }).getByRole('button', { name: 'Rotate' }).click();
  const shown = page.getByRole('dialog', { name: /copy the secret now/ });
  const secret = await shown.getByLabel('Secret').inputValue();
  const fresh = await curl(proxyArgs(secret));
  assert.equal(fresh.httpCode, 200, fresh.stderr);
  assert.ok(createdSecret !== '' && createdSecret !== secret);
  const old = await curl(proxyArgs(createdSecret));
  assert.equal(old.httpCode, 407, 'the old secret is refused');
  await shown.getByRole('button', { name: 'Done, I have copied it' }).click();
  await shown.waitFor({ state: 'detached' });
  assert.ok(!(await page.content()).includes(secret));
  // The limits stay with the key; a later "Save" with an emptied field removes that limit.
  await page.getByLabel(/^Max open tunnels/).fill('');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await waitFor('maxTunnels removed', 5_000, async () => (await api('GET', `/keys/${key.id}`)).json.limits.maxTunnels === undefined);
});

test('revoking from the UI cuts an open tunnel: disable, then delete', async (t) => {
  const page = await open(t, 'key-revoked');
  const created = await api('POST', '/keys', { name: 'to-revoke', device: deviceId });
  assert.equal(created.status, 201);
  const closed = (s: Socket) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
  const withTimeout = (p: Promise<void>, what: string) =>
    Promise.race([p, new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within 5 s`)), 5_000).unref())]);

  const first = await openTunnel(gw.ports.http, created.json.key, echo.port);
  const firstClosed = closed(first);
  await signIn(page, base, TOKEN, `#/keys/${created.json.id}`);
  await page.getByRole('heading', { name: 'to-revoke' }).waitFor();
  await page.getByRole('button', { name: 'Disable' }).click();
  await withTimeout(firstClosed, 'the tunnel cut by disabling the key');
  await page.getByRole('button', { name: 'Enable' }).waitFor();
  await page.getByRole('button', { name: 'Enable' }).click();
  await page.getByRole('button', { name: 'Disable' }).waitFor();

  const second = await openTunnel(gw.ports.http, created.json.key, echo.port);
  const secondClosed = closed(second);
  await page.getByRole('button', { name: 'Delete…' }).click();
  await page.getByRole('dialog', { name: 'Delete to-revoke?' }).getByRole('button', { name: 'Delete key' }).click();
  await withTimeout(secondClosed, 'the tunnel cut by deleting the key');
  await page.waitForURL(/#\/keys$/);
  assert.equal((await api('GET', `/keys/${created.json.id}`)).status, 404);
});

test('the overview refreshes by itself: an open tunnel and the day\'s top key appear without a reload', async (t) => {
  const page = await open(t, 'overview-live');
  let navigations = 0;
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navigations++;
  });
  await signIn(page, base, TOKEN);
  const navigated = navigations;
  const openTunnels = page.locator('.stat').filter({ hasText: 'Open tunnels' }).locator('dd');
  await openTunnels.filter({ hasText: /^0$/ }).waitFor();
  const created = await api('POST', '/keys', { name: 'live-key', device: deviceId });
  const tunnel = await openTunnel(gw.ports.http, created.json.key, echo.port);
  try {
    tunnel.write(Buffer.alloc(300_000, 1));
    await openTunnels.filter({ hasText: /^1$/ }).waitFor();
    // Its bytes are sampled while it is open: the chart's latest point shows them.
    await page.locator('.stat').filter({ hasText: 'Down / up now' }).locator('dd').filter({ hasText: /[1-9].* kB\/s/ }).waitFor();
  } finally {
    tunnel.destroy();
  }
  await openTunnels.filter({ hasText: /^0$/ }).waitFor();
  await page.getByRole('region', { name: 'Top keys today' }).getByRole('link', { name: 'live-key' }).waitFor({ timeout: 15_000 });
  assert.equal(navigations, navigated, 'the page was not reloaded');
});

test('pools: one created in the UI from a label selector lists its members; edit and delete', async (t) => {
  const page = await open(t, 'pools');
  await signIn(page, base, TOKEN, '#/pools');
  await page.getByRole('button', { name: 'Create pool…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Create a pool' });
  await dialog.getByLabel('Name').fill('germany');
  await dialog.getByLabel(/^Selector/).fill('country=de');
  await dialog.getByRole('button', { name: 'Create pool' }).click();
  await page.getByRole('heading', { name: 'germany' }).waitFor();
  const members = page.getByRole('region', { name: 'Members' });
  await members.getByRole('link', { name: 'phone-a' }).waitFor();
  assert.equal(await members.getByRole('link', { name: 'phone-b' }).count(), 0);

  // A wrong selector is refused in place, with the API's message.
  await page.getByLabel(/^Selector/).fill('country');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('alert').filter({ hasText: 'labels: "country" is not key=value' }).waitFor();
  await page.getByLabel('These devices').check();
  await page.getByLabel(/phone-b/).check();
  await page.getByRole('button', { name: 'Save' }).click();
  await members.getByRole('link', { name: 'phone-b' }).waitFor();
  await page.getByRole('link', { name: 'Pools' }).click();
  await page.getByRole('row').filter({ hasText: 'germany' }).filter({ hasText: 'phone-b' }).waitFor();
  await page.getByRole('link', { name: 'germany' }).click();
  await page.getByRole('button', { name: 'Delete…' }).click();
  await page.getByRole('button', { name: 'Delete pool' }).click();
  await page.waitForURL(/#\/pools$/);
  assert.equal((await api('GET', '/pools')).json.length, 0);
});

test('enroll: a pasted registration URL approves the device; an unknown key is refused in place', async (t) => {
  const page = await open(t, 'enroll', [failedFetch(404)]);
  registrar.devices.set('hskey-authreq-UiEnrollPending0001', { headscaleNodeId: '42', ipv4: '127.0.0.4', ipv6: null, name: 'laptop-c' });
  await signIn(page, base, TOKEN, '#/enroll');
  await page.getByLabel('Registration key or URL').fill('https://headscale.example.com/register/hskey-authreq-UiUnknown00000001');
  await page.getByRole('button', { name: 'Approve device' }).click();
  await page.getByRole('alert').filter({ hasText: /no pending registration/ }).waitFor();
  await page.getByLabel('Registration key or URL').fill('https://headscale.example.com/register/hskey-authreq-UiEnrollPending0001');
  await page.getByRole('button', { name: 'Approve device' }).click();
  await page.getByRole('status').filter({ hasText: 'Approved' }).waitFor();
  const devices = (await api('GET', '/devices')).json as { name: string; headscaleNodeId: string | null }[];
  assert.ok(devices.some((d) => d.headscaleNodeId === '42'), JSON.stringify(devices));
});

test('keyboard: a skip link first, the pages through the navigation bar, the page heading focused on arrival', async (t) => {
  const page = await open(t, 'keyboard');
  await signIn(page, base, TOKEN);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  const focused = () => page.evaluate<string>('document.activeElement?.textContent?.trim() ?? ""');
  await page.keyboard.press('Tab');
  assert.equal(await focused(), 'Skip to content');
  const seen: string[] = [];
  for (let i = 0; i < 8 && seen.at(-1) !== 'Keys'; i++) {
    await page.keyboard.press('Tab');
    seen.push(await focused());
  }
  assert.deepEqual(seen, ['Overview', 'Devices', 'Keys']);
  await page.keyboard.press('Enter');
  await page.waitForURL(/#\/keys$/);
  await page.getByRole('heading', { name: 'Keys' }).waitFor();
  await waitFor('the heading focused', 5_000, async () => (await focused()) === 'Keys');
  // The create dialog opens from the keyboard, holds the focus and closes on Escape.
  await page.getByRole('button', { name: 'Create key…' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('dialog', { name: 'Create a key' }).waitFor();
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'detached' });
  // Every control on the pages has a name a screen reader reads out.
  for (const hash of ['#/', '#/devices', `#/devices/${deviceId}`, '#/keys', '#/pools', '#/enroll']) {
    await page.goto(`${base}/ui/${hash}`);
    await page.locator('main h1').waitFor();
    await page.waitForLoadState('networkidle');
    const unnamed = await page.evaluate<string[]>(`[...document.querySelectorAll('input, select, textarea, button')]
      .filter((e) => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))
      .map((e) => e.outerHTML)`);
    assert.deepEqual(unnamed, [], `${hash}: controls without a label`);
  }
});

test("a phone's width: no page scrolls sideways; tables scroll inside their box", async (t) => {
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
  t.after(() => phone.close());
  const w = await watchedPage(phone);
  const page = w.page;
  await signIn(page, base, TOKEN);
  for (const [hash, name] of [['#/', 'Overview'], ['#/devices', 'Devices'], ['#/keys', 'Keys'], ['#/pools', 'Pools'], ['#/enroll', 'Enroll a device'], [`#/devices/${deviceId}`, 'phone-a']] as const) {
    await page.goto(`${base}/ui/${hash}`);
    await page.getByRole('heading', { name, exact: true }).waitFor();
    await page.waitForLoadState('networkidle');
    const [scrollWidth, width] = await page.evaluate<number[]>('[document.documentElement.scrollWidth, innerWidth]');
    assert.ok(scrollWidth <= width, `${hash}: the page is ${scrollWidth} px wide in a ${width} px window`);
    await screenshot(page, `phone-${name.toLowerCase().replace(/\W+/g, '-')}`);
  }
  assert.deepEqual(w.problems, []);
});

test('sign out forgets the token; a token that stops working returns to the sign-in page with the message', async (t) => {
  const page = await open(t, 'signed-out', [failedFetch(401)]);
  await signIn(page, base, TOKEN);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Admin token').waitFor();
  assert.equal(await page.evaluate('sessionStorage.length'), 0);

  await signIn(page, base, TOKEN);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  // As if the gateway's token had been changed under the open page: the next refresh answers 401.
  await page.evaluate("sessionStorage.setItem('tailgate.adminToken', 'a-token-the-gateway-no-longer-takes')");
  await page.getByRole('alert').filter({ hasText: 'Signed out: Authorization: invalid token' }).waitFor();
  await page.getByLabel('Admin token').waitFor();
  assert.equal(await page.evaluate('sessionStorage.length'), 0);
});

test('load figures: requests, bytes and time until the overview is drawn, from a cold cache (native modules, no build)', async (t) => {
  const cold = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => cold.close());
  // Signed in already, so the figure is the overview's own load.
  await cold.addInitScript(`sessionStorage.setItem('tailgate.adminToken', ${JSON.stringify(TOKEN)})`);
  const w = await watchedPage(cold);
  const page = w.page;
  const requests: { path: string; bytes: Promise<number> }[] = [];
  page.on('requestfinished', (r) => requests.push({ path: new URL(r.url()).pathname, bytes: r.sizes().then((s) => s.responseHeadersSize + s.responseBodySize) }));
  const started = performance.now();
  await page.goto(`${base}/ui/`);
  await page.locator('.stats').waitFor();
  await page.locator('.chart canvas').waitFor();
  const drawnMs = performance.now() - started;
  await page.waitForLoadState('networkidle');
  const files = requests.filter((r) => r.path.startsWith('/ui/'));
  const fileBytes = (await Promise.all(files.map((r) => r.bytes))).reduce((a, b) => a + b, 0);
  const apiCalls = requests.filter((r) => !r.path.startsWith('/ui/'));
  const figures = {
    files: files.length,
    fileBytes,
    apiCalls: apiCalls.length,
    apiBytes: (await Promise.all(apiCalls.map((r) => r.bytes))).reduce((a, b) => a + b, 0),
    overviewDrawnMs: Math.round(drawnMs),
  };
  await writeFile(path.join(SCREENSHOTS, 'load-figures.json'), `${JSON.stringify(figures, null, 2)}\n`);
  t.diagnostic(`load: ${JSON.stringify(figures)}`);
  assert.ok(files.length >= 10 && files.length <= 20, `${files.length} files`);
  assert.ok(fileBytes < 150_000, `${fileBytes} bytes of files`);
  assert.deepEqual(w.problems, []);
  await screenshot(page, 'load-figures');
});
