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
import { pino } from 'pino';
import { startGateway, type Gateway } from '../src/app.js';
import { waitFor } from '../testbed/wait.js';
import { launchChromium, screenshot, SCREENSHOTS, signIn, watchedPage, type WatchedPage } from './helpers/browser.js';
import { adminCall, openTunnel } from './helpers/connect-tunnel.js';
import { curl } from './helpers/curl.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startHttpDevice, type Device } from './helpers/devices.js';
import { loopbackConfig } from './helpers/gateway-config.js';
import { ScriptedRegistrar } from './helpers/registrar.js';
import { startEchoTarget, startHttpTarget, type EchoTarget, type Listening } from './helpers/targets.js';

const TOKEN = 'test-admin-token-ui-0123456789abcdef';
const log = pino({ level: 'silent' });

let db: TestDatabase;
let gw: Gateway;
let device: Device;
let web: Listening;
let echo: EchoTarget;
let browser: Browser;
let context: BrowserContext;
let base = '';
let deviceId = 0;
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
  db = await createTestDatabase('ui');
  device = await startHttpDevice('127.0.0.2');
  web = await startHttpTarget();
  echo = await startEchoTarget();
  gw = await startGateway(loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_USAGE_FLUSH_MS: '200' }), log, { registrar });
  base = `http://127.0.0.1:${gw.ports.api}`;
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
});

after(async () => {
  await context?.close();
  await browser?.close();
  await gw?.close();
  await device?.close();
  await web?.close();
  await echo?.close();
  await db?.drop();
});

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
  assert.deepEqual(await page.evaluate(() => [sessionStorage.length, localStorage.length]), [0, 0]);
  assert.ok(!(await page.content()).includes('not-the-admin-token-at-all'));
});

test('sign in: the overview shows devices, tunnels and the live chart, refreshed without reloading', async (t) => {
  const page = await open(t, 'overview');
  await signIn(page, base, TOKEN);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.locator('.stats').waitFor();
  await page.locator('.chart canvas').first().waitFor();
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('tailgate.adminToken')), TOKEN);
});
