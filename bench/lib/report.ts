// Turns one run into the printed table, the ratios against the baselines, the target verdicts and the
// generated section of bench/README.md.
import { readFileSync, writeFileSync } from 'node:fs';

export interface Row {
  scenario: string;
  path: string;
  /** Which tailgate/glider/proxy-chain listener the client used (absent for `direct`). */
  listener?: string;
  value: number;
  unit: string;
}

export interface RunReport {
  machine: Record<string, unknown>;
  versions: Record<string, string>;
  results: Row[];
  /** Only in a --baseline-ref run: the older tailgate that ran as one more path, and tailgate / it per row. */
  baseline?: BaselineReport;
}

export interface BaselineReport {
  ref: string;
  commit: string;
  /** `tailgate@<short sha>`, the path of its rows. */
  path: string;
  ratios: BaselineRatio[];
}

/** tailgate's value divided by the baseline's for one row; null where the baseline measured 0. */
export interface BaselineRatio {
  scenario: string;
  listener?: string;
  ratio: number | null;
}

const SCENARIO_ORDER = [
  'throughput-1',
  'throughput-16',
  'setup-rate',
  'setup-p50',
  'setup-p99',
  'setup-cpu',
  ...['scale-throughput-16', 'scale-setup-rate', 'scale-setup-p50', 'scale-setup-p99', 'scale-setup-cpu'],
  ...['attack-quiet-rate', 'attack-quiet-p50', 'attack-quiet-p99', 'attack-rate', 'attack-p50', 'attack-p99', 'attack-stalled-left-open', 'attack-garbage-left-open'],
  ...['single', 'pool100', 'single2'].flatMap((k) => [`setup-rate-${k}`, `setup-p50-${k}`, `setup-p99-${k}`, `setup-cpu-${k}`]),
  'setup-rate-pool100-ratio',
  'setup-cpu-pool100-ratio',
  'setup-rate-single2-ratio',
  'setup-pool-devices-dialled',
  'idle-rss-per-tunnel',
  'register-to-usable',
  'dropped-under-churn',
  'unauthorized-attempts',
  'unauthorized-under-churn',
  'unauthorized-auther-missing-attempts',
  'unauthorized-auther-missing',
  'tailnet-throughput-1',
  'tailnet-throughput-16',
  'tailnet-setup-rate',
  'tailnet-setup-p50',
  'tailnet-setup-p99',
];
const PATH_ORDER = ['direct', 'tailscale-socks5', 'tailgate', 'tailgate-kernel', 'tailgate-w1', 'tailgate-w2', 'gost', 'glider', 'proxy-chain', 'node-floor'];
/** The path without a gateway, which tailgate's numbers are divided by: on the tailnet, tailscaled's own SOCKS5. */
const directFor = (scenario: string) => (scenario.startsWith('tailnet-') ? 'tailscale-socks5' : 'direct');
/** The baseline tailgate is held to: gost v3 (issue 14); glider keeps its rows as a second Go baseline. */
export const BASELINE = 'gost';

/** An older tailgate (`tailgate@<sha>`) right after this checkout's. */
const pathRank = (path: string) => (path.startsWith('tailgate@') ? PATH_ORDER.indexOf('tailgate') + 0.5 : PATH_ORDER.indexOf(path));

function sortRows(rows: Row[]): Row[] {
  const key = (r: Row) => [SCENARIO_ORDER.indexOf(r.scenario), pathRank(r.path), r.listener === 'socks5' ? 1 : r.listener === 'https' ? 2 : 0];
  return [...rows].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i]! - kb[i]!;
    return 0;
  });
}

function find(rows: Row[], scenario: string, path: string, listener?: string): Row | undefined {
  return rows.find((r) => r.scenario === scenario && r.path === path && (r.listener === undefined || r.listener === listener));
}

const fmt = (v: number | undefined, digits = 2) => (v === undefined || !Number.isFinite(v) ? '–' : String(Math.round(v * 10 ** digits) / 10 ** digits));

export interface Verdict {
  target: string;
  listener: string;
  measured: string;
  pass: boolean | undefined;
}

/** Checks tailgate against the issue's targets; `pass` is undefined when a needed number is missing. */
export function verdicts(rows: Row[]): Verdict[] {
  const out: Verdict[] = [];
  for (const listener of ['http', 'socks5']) {
    const tg = (s: string) => find(rows, s, 'tailgate', listener)?.value;
    const base = (s: string) => find(rows, s, BASELINE, listener)?.value;
    const dir = (s: string) => find(rows, s, 'direct')?.value;
    for (const s of ['throughput-1', 'throughput-16']) {
      const t = tg(s);
      const b = base(s);
      const d = dir(s);
      out.push({ target: `${s} >= 1.0x ${BASELINE}`, listener, measured: b && t !== undefined ? `${fmt(t / b)}x` : '–', pass: t !== undefined && b ? t / b >= 1.0 : undefined });
      out.push({ target: `${s} >= 0.8x direct`, listener, measured: d && t !== undefined ? `${fmt(t / d)}x` : '–', pass: t !== undefined && d ? t / d >= 0.8 : undefined });
    }
    {
      const t = tg('setup-rate');
      const b = base('setup-rate');
      out.push({ target: `setup-rate >= 1.0x ${BASELINE}`, listener, measured: b && t !== undefined ? `${fmt(t / b)}x` : '–', pass: t !== undefined && b ? t / b >= 1.0 : undefined });
    }
    // Issue 14, the `scale` group: tailgate with two workers against gost, both given both cores, in the same run.
    for (const s of ['scale-throughput-16', 'scale-setup-rate']) {
      const t = find(rows, s, 'tailgate-w2', listener)?.value;
      const b = base(s);
      out.push({ target: `${s} w2 >= 1.0x ${BASELINE}`, listener, measured: b && t !== undefined ? `${fmt(t / b)}x` : '–', pass: t !== undefined && b ? t / b >= 1.0 : undefined });
    }
    // Issue 14: the raw-net relay (bench/servers/node-floor.ts) is what Node itself needs; it serves HTTP only.
    for (const s of listener === 'http' ? ['throughput-16', 'setup-rate'] : []) {
      const t = tg(s);
      const f = find(rows, s, 'node-floor', listener)?.value;
      out.push({ target: `${s} >= 0.95x node-floor`, listener, measured: f && t !== undefined ? `${fmt(t / f)}x` : '–', pass: t !== undefined && f ? t / f >= 0.95 : undefined });
    }
    {
      const t = tg('setup-rate-pool100-ratio');
      out.push({ target: 'setup-rate pool of 100 >= 0.95x one device', listener, measured: t !== undefined ? `${fmt(t, 3)}x` : '–', pass: t !== undefined ? t >= 0.95 : undefined });
    }
    {
      const t = tg('setup-p99');
      const d = dir('setup-p99');
      out.push({ target: 'setup-p99 <= direct + 1 ms', listener, measured: t !== undefined && d !== undefined ? `+${fmt(t - d)} ms` : '–', pass: t !== undefined && d !== undefined ? t - d <= 1 : undefined });
    }
    {
      const t = tg('idle-rss-per-tunnel');
      out.push({ target: 'idle-rss-per-tunnel <= 8 KiB', listener, measured: t !== undefined ? `${fmt(t)} KiB` : '–', pass: t !== undefined ? t <= 8 : undefined });
    }
    {
      const t = tg('register-to-usable');
      out.push({ target: 'register-to-usable <= 50 ms', listener, measured: t !== undefined ? `${fmt(t)} ms` : '–', pass: t !== undefined ? t <= 50 : undefined });
    }
    {
      const t = tg('dropped-under-churn');
      out.push({ target: 'dropped-under-churn = 0', listener, measured: t !== undefined ? String(t) : '–', pass: t !== undefined ? t === 0 : undefined });
    }
  }
  return out;
}

const HELD_TO_BASELINE = new Set(['tailgate', 'tailgate-kernel', 'tailgate-w1', 'tailgate-w2']);

function ratioCells(rows: Row[], r: Row): [string, string] {
  // tailgate-kernel: scenario 5's kernel-mode tailgate, held to tailscaled's own SOCKS5 like the userspace one;
  // tailgate-w1 and -w2: the `scale` group's, held to gost on the same cores.
  if (!HELD_TO_BASELINE.has(r.path)) return ['', ''];
  const b = find(rows, r.scenario, BASELINE, r.listener)?.value;
  const d = find(rows, r.scenario, directFor(r.scenario))?.value;
  return [b ? `${fmt(r.value / b)}x` : '', d ? `${fmt(r.value / d)}x` : ''];
}

/** tailgate / the --baseline-ref build, for every row both produced (scenario 5 has no baseline path). */
export function baselineRatios(rows: Row[], baselinePath: string): BaselineRatio[] {
  const out: BaselineRatio[] = [];
  for (const r of sortRows(rows)) {
    if (r.path !== 'tailgate') continue;
    const b = rows.find((x) => x.scenario === r.scenario && x.path === baselinePath && x.listener === r.listener);
    if (!b) continue;
    out.push({
      scenario: r.scenario,
      ...(r.listener !== undefined ? { listener: r.listener } : {}),
      ratio: b.value !== 0 && Number.isFinite(b.value) ? Math.round((r.value / b.value) * 1000) / 1000 : null,
    });
  }
  return out;
}

function baselineCell(report: RunReport, r: Row): string {
  const ratio = r.path === 'tailgate' ? report.baseline?.ratios.find((x) => x.scenario === r.scenario && x.listener === r.listener) : undefined;
  return ratio ? (ratio.ratio === null ? '–' : `${fmt(ratio.ratio)}x`) : '';
}

export function printTable(report: RunReport, log: (s: string) => void): void {
  const rows = sortRows(report.results);
  const base = report.baseline;
  const head = ['scenario', 'path', 'listener', 'value', 'unit', `tg/${BASELINE}`, 'tg/direct', ...(base ? [`tg/${base.path}`] : [])];
  const body = rows.map((r) => [r.scenario, r.path, r.listener ?? '', fmt(r.value), r.unit, ...ratioCells(rows, r), ...(base ? [baselineCell(report, r)] : [])]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  log(line(head));
  log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) log(line(b));
  if (base) {
    log(`\ntg/${base.path}: tailgate / the build of ${base.ref} (${base.commit.slice(0, 12)}); above 1x is more throughput or setups, but also more latency, memory or drops`);
  }
  const v = verdicts(rows).filter((x) => x.pass !== undefined);
  if (v.length > 0) {
    log('\ntargets (tailgate):');
    for (const x of v) log(`  ${x.pass ? 'PASS' : 'MISS'}  ${x.target.padEnd(36)} ${x.listener.padEnd(7)} ${x.measured}`);
  }
}

export function markdownTable(report: RunReport): string {
  const rows = sortRows(report.results);
  const lines = [`| scenario | path | listener | value | unit | tailgate/${BASELINE} | tailgate/direct |`, '|---|---|---|---:|---|---:|---:|'];
  for (const r of rows) lines.push(`| ${r.scenario} | ${r.path} | ${r.listener ?? ''} | ${fmt(r.value)} | ${r.unit} | ${ratioCells(rows, r).join(' | ')} |`);
  return lines.join('\n');
}

/** Scenario 5: what tailgate adds on the tailnet path, as ratios to tailscaled's own SOCKS5 (1.0x = no overhead). */
export function tailnetOverhead(report: RunReport, details: Record<string, unknown>[]): string[] {
  const rows = report.results;
  if (!rows.some((r) => r.scenario.startsWith('tailnet-'))) return [];
  const solo = (path: string, listener?: string) =>
    (details.find((d) => d.scenario === 'tailnet-setup' && d.path === path && (listener === undefined || d.listener === listener))?.concurrency1 as { p50Ms: number } | undefined)?.p50Ms;
  const lines = [
    '| path | listener | throughput-1 | throughput-16 | setup-rate | setup p50 at c=1, added |',
    '|---|---|---:|---:|---:|---:|',
  ];
  for (const path of ['tailgate', 'tailgate-kernel']) {
    for (const listener of ['http', 'socks5']) {
      if (!rows.some((r) => r.path === path && r.listener === listener && r.scenario.startsWith('tailnet-'))) continue;
      const ratio = (s: string) => {
        const t = find(rows, s, path, listener)?.value;
        const b = find(rows, s, 'tailscale-socks5')?.value;
        return t !== undefined && b ? `${fmt(t / b)}x` : '–';
      };
      const t1 = solo(path, listener);
      const b1 = solo('tailscale-socks5');
      lines.push(`| ${path} | ${listener} | ${ratio('tailnet-throughput-1')} | ${ratio('tailnet-throughput-16')} | ${ratio('tailnet-setup-rate')} | ${t1 !== undefined && b1 !== undefined ? `+${fmt(t1 - b1, 3)} ms` : '–'} |`);
    }
  }
  return lines;
}

export function markdownVerdicts(report: RunReport): string {
  const lines = ['| target | listener | measured | verdict |', '|---|---|---:|---|'];
  for (const v of verdicts(report.results)) lines.push(`| ${v.target} | ${v.listener} | ${v.measured} | ${v.pass === undefined ? 'not measured' : v.pass ? 'met' : '**missed**'} |`);
  return lines.join('\n');
}

const START = '<!-- bench:results:start -->';
const END = '<!-- bench:results:end -->';

/** Replaces the generated section of bench/README.md with this run's numbers. */
export function writeReadme(file: string, report: RunReport, resultsFile: string, skipped: Record<string, string>, details: Record<string, unknown>[]): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    text = `# Benchmarks\n\n${START}\n${END}\n`;
  }
  const m = report.machine;
  const cpuDetails = details
    .filter((d) => (d.scenario === 'throughput-16' || d.scenario === 'tailnet-throughput-16') && d.upMiBps !== undefined)
    .map((d) => `| ${d.scenario === 'throughput-16' ? '' : 'tailnet: '}${d.path} | ${d.listener ?? ''} | ${d.upMiBps} | ${d.downMiBps} | ${d.gatewayCpuMsPerGiB ?? '–'} | ${d.tailscaledCpuMsPerGiB ?? '–'} | ${d.deviceCpuMsPerGiB} |`);
  const overhead = tailnetOverhead(report, details);
  const setupDetails = details
    .filter((d) => d.scenario === 'setup' || d.scenario === 'tailnet-setup')
    .map((d) => {
      const c1 = d.concurrency1 as { p50Ms: number; p99Ms: number } | undefined;
      return `| ${d.scenario === 'setup' ? '' : 'tailnet: '}${d.path} | ${d.listener ?? ''} | ${d.gatewayCpuUsPerTunnel ?? '–'} | ${d.failures} | ${fmt(c1?.p50Ms, 3)} | ${fmt(c1?.p99Ms, 3)} |`;
    });
  // The `scale` group: the gateway's CPU is its whole process tree (tailgate-w2: the primary and both workers).
  const scaleDetails = details
    .filter((d) => d.scenario === 'scale-throughput-16' && d.upMiBps !== undefined)
    .map((d) => {
      const setup = details.find((x) => x.scenario === 'scale-setup' && x.path === d.path && x.listener === d.listener);
      return `| ${d.path} | ${d.listener ?? ''} | ${d.gatewayCpuMsPerGiB ?? '–'} | ${setup?.gatewayCpuUsPerTunnel ?? '–'} |`;
    });
  const section = [
    START,
    `Latest full run: \`${resultsFile}\` (${m.mode} mode). Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}, ${report.versions.node}.`,
    `Pinning: ${Object.entries(m.pinning as Record<string, string>).map(([k, v]) => `${k} = ${v}`).join('; ')}.`,
    `Versions: ${Object.entries(report.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
    ...(Object.keys(skipped).length > 0 ? ['', `Skipped in this run: ${Object.entries(skipped).map(([k, v]) => `${k} (${v})`).join('; ')}.`] : []),
    '',
    markdownTable(report),
    '',
    `Targets from issues 4 and 10, tailgate against this run (baseline = ${BASELINE}):`,
    '',
    markdownVerdicts(report),
    ...(overhead.length > 0
      ? ['', 'Scenario 5, tailnet overhead: tailgate over tailscaled’s own SOCKS5 to the same device (`tailnet-*` rows; there, tailgate/direct means tailgate/tailscale-socks5; `tailgate` is userspace, dialling through the same tailscaled, `tailgate-kernel` is TS_USERSPACE=false):', '', ...overhead]
      : []),
    ...(setupDetails.length > 0
      ? ['', 'setup, per tunnel: gateway CPU, and latency with one tunnel at a time (no queueing):', '', '| path | listener | gateway CPU µs/tunnel | failed setups | p50 ms (c=1) | p99 ms (c=1) |', '|---|---|---:|---:|---:|---:|', ...setupDetails]
      : []),
    ...(cpuDetails.length > 0
      ? ['', 'throughput-16 per direction, and CPU each proxy spent per GiB moved (from /proc utime+stime):', '', '| path | listener | up MiB/s | down MiB/s | gateway CPU ms/GiB | its tailscaled CPU ms/GiB | device CPU ms/GiB |', '|---|---|---:|---:|---:|---:|---:|', ...cpuDetails]
      : []),
    ...(scaleDetails.length > 0
      ? ['', '`scale` group, the gateway on both cores: its CPU (every process of it) per GiB in scale-throughput-16 and per tunnel in scale-setup:', '', '| path | listener | gateway CPU ms/GiB | gateway CPU µs/tunnel |', '|---|---|---:|---:|', ...scaleDetails]
      : []),
    END,
  ].join('\n');
  const s = text.indexOf(START);
  const e = text.indexOf(END);
  text = s >= 0 && e > s ? text.slice(0, s) + section + text.slice(e + END.length) : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(file, text);
}
