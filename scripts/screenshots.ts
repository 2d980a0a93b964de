// `npm run screenshots`: the README's pictures of the dashboard, made the way the browser tests drive it. Starts a
// gateway on a throw-away PostgreSQL database with a few stand-in devices (one of them dead), keys and half a minute of
// traffic through curl, then writes docs/overview.png and docs/devices.png at 1280×800 with Chromium.
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { startGateway } from '../src/app.js';
import { launchChromium, screenshot, signIn, watchedPage } from '../test/helpers/browser.js';
import { adminCall } from '../test/helpers/connect-tunnel.js';
import { createTestDatabase } from '../test/helpers/db.js';
import { closedPort, startHttpDevice, type Device } from '../test/helpers/devices.js';
import { loopbackConfig } from '../test/helpers/gateway-config.js';
import { startHttpTarget } from '../test/helpers/targets.js';

const run = promisify(execFile);
const TOKEN = 'screenshots-admin-token-0123456789';
const DEVICES = [
  { name: 'phone-berlin', host: '127.0.0.2', labels: { country: 'de', kind: 'phone' } },
  { name: 'phone-paris', host: '127.0.0.3', labels: { country: 'fr', kind: 'phone' } },
  { name: 'pc-madrid', host: '127.0.0.4', labels: { country: 'es', kind: 'pc' } },
  { name: 'server-oslo', host: '127.0.0.5', labels: { country: 'no', kind: 'server' } },
];
const TRAFFIC_MS = 30_000;

async function main(): Promise<void> {
  const db = await createTestDatabase('screenshots');
  const web = await startHttpTarget();
  const proxies: Device[] = [];
  const gw = await startGateway(loopbackConfig(TOKEN, { DATABASE_URL: db.url, TAILGATE_USAGE_FLUSH_MS: '500' }), pino({ level: 'silent' }));
  const api = (method: string, p: string, body?: unknown) => adminCall(gw.ports.api, TOKEN, method, p, body);
  try {
    const keys: { key: string; weight: number }[] = [];
    for (const [i, d] of DEVICES.entries()) {
      // The last device has nothing listening: its breaker opens and it shows as down.
      const dead = i === DEVICES.length - 1;
      const proxy = dead ? undefined : await startHttpDevice(d.host);
      if (proxy) proxies.push(proxy);
      const port = proxy?.port ?? (await closedPort(d.host));
      const r = await api('POST', '/register', { key: `screenshot-device-${i}-000000`, ip: d.host, port, name: d.name });
      const deviceId = (await api('GET', `/keys/${r.json.node.id}`)).json.target.device;
      await api('PATCH', `/devices/${deviceId}`, { labels: d.labels });
      const k = await api('POST', '/keys', { name: `customer-${d.labels.country}`, device: deviceId, limits: { quota: { bytes: 2_000_000_000, period: 'month' } } });
      keys.push({ key: k.json.key, weight: dead ? 0 : DEVICES.length - i });
    }
    await api('POST', '/pools', { name: 'phones', selector: { kind: 'phone' } });

    const curl = (key: string, bytes: number) =>
      run('curl', ['-sS', '-o', '/dev/null', '--max-time', '10', '-x', `http://${key}:${key}@127.0.0.1:${gw.ports.http}`, `http://127.0.0.1:${web.port}/big?n=${bytes}`]).catch(() => undefined);
    const until = Date.now() + TRAFFIC_MS;
    for (let tick = 0; Date.now() < until; tick++) {
      // A swell and a lull, so the live chart has a shape.
      const load = 1 + Math.round(4 * Math.abs(Math.sin(tick / 6)));
      await Promise.all(keys.flatMap(({ key, weight }) => Array.from({ length: weight === 0 ? 1 : load }, () => curl(key, weight * 400_000))));
      await new Promise((r) => setTimeout(r, 500));
    }
    await gw.usage.flush();

    const browser = await launchChromium();
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const { page, problems } = await watchedPage(context);
      const base = `http://127.0.0.1:${gw.ports.api}`;
      await signIn(page, base, TOKEN);
      await page.locator('.chart canvas').waitFor();
      await page.getByRole('region', { name: 'Top keys today' }).getByRole('link').first().waitFor({ timeout: 15_000 });
      await page.waitForTimeout(2_500);
      const docs = path.resolve('docs');
      await screenshot(page, 'overview', path.join(docs, 'overview.png'));
      // Three failures in a row open the dead device's breaker: it shows as down for the next 10 s.
      const dead = keys.find((k) => k.weight === 0)!;
      for (let i = 0; i < 3; i++) await curl(dead.key, 1);
      await page.getByRole('link', { name: 'Devices', exact: true }).click();
      await page.locator('svg.spark').first().waitFor();
      await page.waitForLoadState('networkidle');
      await screenshot(page, 'devices', path.join(docs, 'devices.png'));
      if (problems.length > 0) throw new Error(`console errors: ${problems.join('; ')}`);
      for (const f of ['overview.png', 'devices.png']) console.log(`docs/${f}: ${(await stat(path.join(docs, f))).size} bytes`);
    } finally {
      await browser.close();
    }
  } finally {
    await gw.close();
    for (const p of proxies) await p.close();
    await web.close();
    await db.drop();
  }
}

await main();
