// `npm run bench`: measures tailgate against the direct path, gost v3 (the baseline), glider and proxy-chain,
// on this machine, over loopback, in one run. See bench/README.md for the method and the latest numbers.
//
//   npm run bench                         everything but the two scenarios that run on their own (<= 10 min)
//   npm run bench -- --all                those too: setup-under-attack (~6.5 min) and setup-pool (~1 min)
//   npm run bench -- --quick              smoke run of every scenario (< 4 min)
//   npm run bench -- --only throughput-1  one scenario (comma-separated list allowed)
//   npm run bench -- --only tailnet-overhead   scenario 5: real headscale + tailscaled in a private netns (root)
//   npm run bench -- --only setup-pool    issue 10: setup-rate through a key for a pool of 100 devices vs one device
//   npm run bench -- --only scale         issue 14: the gateway on both cores, tailgate with 1 and 2 workers vs gost, glider
//   npm run bench -- --paths direct,tailgate
//   npm run bench -- --device node        device stand-in: go (default, bench/device), node or glider
//   npm run bench -- --quick --check      CI smoke: fail unless every scenario produced tailgate's numbers
//   npm run bench -- --profile            tailgate with --cpu-prof, plus a heap snapshot at the idle peak
//                                         (summarise: node --import tsx bench/profile-summary.ts <dir>)
//   npm run bench -- --repeats 9          more interleaved repetitions for throughput and setup (steadier medians)
//   npm run bench -- --baseline-ref HEAD~1   also an older tailgate, built from that git ref in a temporary
//                                         directory, as path tailgate@<short sha>, with ratios tailgate / it
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { BaselineCheckout, resolveBaseline, type BaselineCommit } from './lib/baseline.js';
import { startDevice } from './lib/endpoints.js';
import { ENDPOINT_CPU, PATH_NEEDS, PROXY_CPU, type Ctx, type Scenario } from './lib/harness.js';
import { gitHead, machineInfo, raiseFdLimit } from './lib/machine.js';
import { round } from './lib/measure.js';
import { nodeFloor } from './lib/node-floor.js';
import { FULL, parseArgs, QUICK, type Options } from './lib/options.js';
import { ensureGost, gostKind, gostVersion } from './lib/gost.js';
import {
  buildTailgate,
  createTailgateDatabase,
  direct,
  ensureGlider,
  gliderKind,
  gliderVersion,
  proxyChain,
  proxyChainVersion,
  tailgateKind,
  tailgateMissing,
  type Env,
  type GatewayKind,
  type TailgateSetup,
} from './lib/paths.js';
import { freePort, killAll, LoadGen, spawnPinned, stop, waitReadyLine, type Pinned } from './lib/procs.js';
import { baselineRatios, printTable, writeReadme, type Row, type RunReport } from './lib/report.js';
import { SCENARIOS } from './scenarios/index.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

class UsageError extends Error {}
/** Set by the interrupt handler: what the run then throws is the interrupt's doing, not worth reporting. */
let interrupted = false;

function usage(): string {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
  return lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).join('\n') + '\n';
}

async function main(): Promise<void> {
  let opts: Options;
  let baseline: BaselineCommit | undefined;
  try {
    opts = parseArgs(process.argv.slice(2), SCENARIOS);
    if (opts.help) {
      process.stdout.write(usage());
      return;
    }
    if (opts.baselineRef !== undefined) baseline = resolveBaseline(repo, opts.baselineRef);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const sizes = { ...(opts.quick ? QUICK : FULL) };
  if (opts.repeats !== undefined) {
    // Same slice length, more slices: the medians and the spread firm up, a slice's meaning stays the same.
    sizes.setupDurationMs = (sizes.setupDurationMs / sizes.setupRepeats) * opts.repeats;
    sizes.setupRepeats = opts.repeats;
    sizes.throughputRepeats = opts.repeats;
    sizes.scaleSetupRepeats = opts.repeats;
    sizes.scaleThroughputRepeats = opts.repeats;
  }
  const t0 = performance.now();
  const log = (s: string) => process.stdout.write(`${s}\n`);

  // N idle tunnels need ~2N descriptors in the gateway and in the device proxy (two per tunnel):
  // raise the limit for this process, which every child inherits. Where the hard limit cannot be raised
  // (no CAP_SYS_RESOURCE), measure at the largest count that fits and say so.
  const fdLimit = raiseFdLimit(262_144);
  const fitting = Math.floor((fdLimit - 200) / 2 / 100) * 100;
  if (fitting < sizes.idleTunnels) {
    log(`! open-file hard limit is ${fdLimit} and cannot be raised here: idle-rss-per-tunnel measured at ${fitting} tunnels instead of ${sizes.idleTunnels}`);
    sizes.idleTunnels = fitting;
  }
  // setup-under-attack: the stalled pool costs one descriptor in the attacker and one in the gateway, next to the
  // well-behaved clients' tunnels (two each in the gateway) and the garbage workers.
  const attackFitting = Math.floor((fdLimit - 1_000) / 1_000) * 1_000;
  if (attackFitting < sizes.attackStalled) {
    log(`! open-file hard limit is ${fdLimit}: setup-under-attack keeps ${attackFitting} stalled connections instead of ${sizes.attackStalled}`);
    sizes.attackStalled = attackFitting;
  }
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(ENDPOINT_CPU), String(process.pid)], { stdio: 'ignore' });
  } catch {
    log('! taskset failed: processes are not pinned');
  }

  const logDir = mkdtempSync(path.join(os.tmpdir(), 'tailgate-bench-'));
  log(`tailgate bench (${opts.quick ? 'quick' : 'full'}); process logs in ${logDir}`);

  const skipped: Record<string, string> = {};
  const versions: Record<string, string> = { node: process.version };

  // Tools first: a missing baseline is reported, not fatal.
  let glider: { bin: string; version: string } | undefined;
  try {
    const bin = await ensureGlider(repo);
    glider = { bin, version: await gliderVersion(bin) };
    versions.glider = glider.version;
  } catch (err) {
    skipped.glider = `glider could not be built: ${(err as Error).message}`;
  }
  let gostBin: string | undefined;
  if (opts.paths.includes('gost')) {
    try {
      gostBin = await ensureGost(repo);
      versions.gost = await gostVersion(gostBin);
    } catch (err) {
      skipped.gost = `gost could not be built: ${(err as Error).message}`;
    }
  }
  versions['proxy-chain'] = proxyChainVersion(repo);

  // What must go whatever happens: the throw-away databases and the baseline's temporary checkout.
  const databases: TailgateSetup[] = [];
  let checkout: BaselineCheckout | undefined;
  // Interrupted: no child may outlive the run, and the databases and the checkout go too.
  const abort = (signal: NodeJS.Signals) => {
    interrupted = true;
    killAll();
    checkout?.remove();
    void Promise.allSettled(databases.map((d) => d.dropDatabase())).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);

  const kinds: GatewayKind[] = [];
  const devices: Pinned[] = [];
  let sink: Pinned | undefined;
  let loadgen: LoadGen | undefined;
  try {
    let tailgate: GatewayKind | undefined;
    if (opts.paths.includes('tailgate')) {
      const missing = tailgateMissing(repo);
      if (missing.length > 0) skipped.tailgate = `not built yet (missing ${missing.join(', ')})`;
      else {
        try {
          await buildTailgate(repo);
          const setup = await createTailgateDatabase();
          databases.push(setup);
          tailgate = tailgateKind(setup, { path: 'tailgate', dir: repo });
          versions.tailgate = `${JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).version} (${gitHead(repo)})`;
        } catch (err) {
          skipped.tailgate = (err as Error).message;
        }
      }
    }
    // Asked for by name, so a baseline that cannot be built ends the run instead of being skipped.
    let older: GatewayKind | undefined;
    let baselineDetails: Record<string, string> | undefined;
    if (baseline) {
      checkout = new BaselineCheckout(repo, baseline);
      log(`building ${baseline.path} (${opts.baselineRef}) in ${checkout.dir}`);
      const dependencies = await checkout.build();
      const setup = await createTailgateDatabase();
      databases.push(setup);
      older = tailgateKind(setup, { path: baseline.path, dir: checkout.dir });
      versions[baseline.path] = checkout.version();
      baselineDetails = { ref: baseline.ref, commit: baseline.commit, dir: checkout.dir, dependencies };
    }

    sink = spawnPinned('sink', ENDPOINT_CPU, process.execPath, ['--import', 'tsx', 'bench/servers/sink.ts', String(await freePort())], { cwd: repo, pipeStdout: true, logFile: path.join(logDir, 'sink.log') });
    const { port: sinkPort } = await waitReadyLine(sink, 20_000);
    const device = await startDevice(opts.device, repo, logDir, glider ?? skipped.glider ?? 'not built', devices);
    versions.device = device.version;
    loadgen = await LoadGen.start(ENDPOINT_CPU, repo, { ...process.env });

    const profileDir = opts.profile ? path.join(logDir, 'profiles') : undefined;
    if (profileDir) {
      mkdirSync(profileDir, { recursive: true });
      log(`profiles go to ${profileDir}`);
    }
    const env: Env = { repo, logDir, profileDir, proxyCpu: PROXY_CPU, device: { host: '127.0.0.1', port: device.port }, key: `bench${randomBytes(12).toString('hex')}` };
    // In --paths order; the baseline goes right after tailgate, so their repetitions alternate.
    for (const p of opts.paths) {
      if (p === 'direct') kinds.push(direct);
      else if (p === 'tailgate' && tailgate) kinds.push(tailgate);
      else if (p === 'gost' && gostBin) kinds.push(gostKind(gostBin));
      else if (p === 'glider' && glider) kinds.push(gliderKind(glider.bin));
      else if (p === 'proxy-chain') kinds.push(proxyChain);
      else if (p === 'node-floor') kinds.push(nodeFloor);
      if (p === 'tailgate' && older) kinds.push(older);
    }
    if (older && !kinds.includes(older)) kinds.push(older);
    for (const [p, why] of Object.entries(skipped)) log(`! skipping ${p}: ${why}`);

    const ctx: Ctx = { opts, sizes, env, loadgen, sink, devices, target: { host: '127.0.0.1', port: sinkPort }, rows: [], details: [], log, scenario: '', versions };
    const ran = opts.scenarios.map((name) => SCENARIOS.find((s) => s.name === name)!);
    for (const scenario of ran) {
      const ts = performance.now();
      ctx.scenario = scenario.name;
      ctx.env.profileLabel = scenario.name;
      await runScenario(ctx, scenario, kinds);
      log(`  (${scenario.name}: ${round((performance.now() - ts) / 1000, 1)} s)`);
    }

    const report: RunReport = {
      machine: machineInfo(opts.quick, fdLimit, sizes.idleTunnels),
      versions,
      results: ctx.rows,
      ...(baseline ? { baseline: { ref: baseline.ref, commit: baseline.commit, path: baseline.path, ratios: baselineRatios(ctx.rows, baseline.path) } } : {}),
    };
    const stamp = new Date().toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
    const resultsDir = path.join(repo, 'bench/results');
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `${stamp}.json`);
    writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    writeFileSync(path.join(resultsDir, `${stamp}.details.json`), JSON.stringify({ skipped, sizes, ...(baselineDetails ? { baseline: baselineDetails } : {}), details: ctx.details }, null, 2) + '\n');
    log('');
    printTable(report, log);
    log(`\nwrote ${path.relative(repo, file)} (+ .details.json) in ${round((performance.now() - t0) / 1000, 1)} s`);
    if (opts.writeReadme) {
      writeReadme(path.join(repo, 'bench/README.md'), report, path.relative(path.join(repo, 'bench'), file), skipped, ctx.details);
      log('updated bench/README.md');
    }
    if (opts.check) {
      const problems = checkRun(ran, ctx.rows, skipped, baseline?.path);
      if (problems.length > 0) throw new Error(`--check: ${problems.join('; ')}`);
      log(`--check: every scenario produced tailgate’s${baseline ? ` and ${baseline.path}’s` : ''} numbers`);
    }
  } finally {
    await loadgen?.close();
    for (const d of devices) await stop(d);
    await stop(sink);
    for (const d of databases) await d.dropDatabase().catch((err: Error) => log(`! could not drop a bench database: ${err.message}`));
    checkout?.remove();
  }
}

/** Runs one entry of the scenario table on the paths it measures, or says why it cannot run. */
async function runScenario(ctx: Ctx, scenario: Scenario, kinds: GatewayKind[]): Promise<void> {
  const need = PATH_NEEDS[scenario.needs.paths];
  const admitted = kinds.filter((k) => need.admits(k));
  if (admitted.length === 0) {
    ctx.log(`${scenario.name}: skipped (${need.none})`);
    return;
  }
  if (scenario.needs.root && process.getuid?.() !== 0) {
    const why = `needs root: ${scenario.needs.root}`;
    ctx.log(`  ! ${scenario.name}: ${why}`);
    ctx.details.push({ scenario: scenario.name, error: why });
    return;
  }
  await scenario.run(ctx, admitted);
}

/**
 * What a smoke run must show: tailgate (and the --baseline-ref build, where it takes part; or the paths a scenario
 * names, such as the `scale` group's tailgate-w1 and tailgate-w2) measured on both listeners in every row of every
 * scenario that ran (a path that failed is only logged by the scenarios,
 * so a broken data plane would otherwise pass), plus each scenario's own checks. No timing is judged.
 */
function checkRun(ran: Scenario[], rows: Row[], skipped: Record<string, string>, baselinePath: string | undefined): string[] {
  if (skipped.tailgate) return [`tailgate was not run: ${skipped.tailgate}`];
  const problems: string[] = [];
  for (const scenario of ran) {
    const paths = scenario.checkPaths ?? (baselinePath && scenario.needs.paths !== 'tailgate' ? ['tailgate', baselinePath] : ['tailgate']);
    for (const name of scenario.rows) {
      for (const p of paths) {
        for (const listener of ['http', 'socks5']) {
          // A row of the whole gateway (no listener, such as key-changes-per-second) stands for both listeners.
          const row = rows.find((r) => r.scenario === name && r.path === p && (r.listener === listener || r.listener === undefined));
          if (!row || !Number.isFinite(row.value)) problems.push(`no ${name} for ${p}/${listener}`);
        }
      }
    }
    problems.push(...(scenario.check?.(rows) ?? []));
  }
  return problems;
}

main().catch((err) => {
  if (interrupted) return; // the interrupt handler exits once the databases are dropped
  if (err instanceof UsageError) {
    process.stderr.write(`bench: ${err.message} (see --help)\n`);
    process.exit(2);
  }
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
