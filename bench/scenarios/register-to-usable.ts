// register-to-usable: from a new key's registration to its first successful tunnel.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { addGatewayRow, median, withGateway, type Scenario } from '../lib/harness.js';
import { round } from '../lib/measure.js';
import type { RegisterToUsableResult, UsableResult } from '../loadgen.js';
import { gostRegisterToUsable } from './gost-users.js';

export const registerToUsable: Scenario = {
  name: 'register-to-usable',
  rows: ['register-to-usable'],
  needs: { paths: 'new-keys' },
  async run(ctx, kinds) {
    ctx.log('register-to-usable: POST /register (gost: PUT /config/authers/<name>) returning -> first successful tunnel with the new key');
    for (const kind of kinds) {
      if (kind.family === 'tailgate') {
        await withGateway(ctx, kind, async (gw) => {
          const r = await ctx.loadgen.request<RegisterToUsableResult>(
            {
              type: 'register-to-usable',
              api: gw.apiUrl,
              token: gw.adminToken,
              device: { ip: ctx.env.device.host, port: ctx.env.device.port },
              proxies: gw.listeners.map((l) => l.proxy),
              target: ctx.target,
              trials: ctx.sizes.r2uTrials,
              deadlineMs: 5_000,
            },
            120_000,
          );
          for (const [i, st] of r.perProxy.entries()) {
            const listener = gw.listeners[i]!.listener;
            if (st.samplesMs.length > 0) addGatewayRow(ctx, 'register-to-usable', gw, listener, median(st.samplesMs), 'ms');
            if (st.failedTrials > 0) ctx.log(`  ! ${gw.path}/${listener}: ${st.failedTrials} trials never became usable: ${st.errors.join('; ')}`);
            ctx.details.push({
              scenario: 'register-to-usable',
              path: gw.path,
              listener,
              samplesMs: st.samplesMs.map((v) => round(v, 2)),
              maxMs: round(Math.max(...st.samplesMs), 2),
              failedTrials: st.failedTrials,
              errors: st.errors,
            });
          }
        });
      } else if (kind.family === 'gost') {
        await withGateway(ctx, { path: kind.path, start: kind.startWithApi }, (gw) => gostRegisterToUsable(ctx, gw));
      } else if (kind.family === 'glider') {
        // glider has no API: a new user means a new command line, i.e. a restart. Measured from the moment
        // the restart begins to the first successful tunnel with the new key.
        await withGateway(ctx, kind, async (gw) => {
          const samples: Record<string, number[]> = { http: [], socks5: [] };
          const errors: string[] = [];
          for (let i = 0; i < ctx.sizes.gliderRestarts; i++) {
            const l = gw.listeners[i % gw.listeners.length]!;
            const key = `r2u${randomBytes(8).toString('hex')}`;
            const t0 = performance.timeOrigin + performance.now();
            await gw.restart(key);
            const r = await ctx.loadgen.request<UsableResult>({ type: 'until-usable', proxy: { ...l.proxy, key }, target: ctx.target, deadlineMs: 10_000 }, 30_000);
            if (r.ok) samples[l.listener]!.push(r.okAtWallMs - t0);
            else errors.push(r.lastError);
          }
          for (const l of gw.listeners) {
            const s = samples[l.listener]!;
            if (s.length > 0) addGatewayRow(ctx, 'register-to-usable', gw, l.listener, median(s), 'ms');
            ctx.details.push({ scenario: 'register-to-usable', path: 'glider', listener: l.listener, how: 'restart with the new user (glider has no API)', samplesMs: s.map((v) => round(v, 2)), errors });
          }
        });
      }
    }
  },
};
