// Command line and run sizes of `npm run bench` (the flags are listed at the top of bench/run.ts).
import { ALL_PATHS, type PathName } from './paths.js';

export type DeviceChoice = 'go' | 'glider' | 'node';

export interface Options {
  quick: boolean;
  /** Scenario names to run, in order: the table's, or the order `--only` gave. */
  scenarios: string[];
  paths: PathName[];
  device: DeviceChoice;
  writeReadme: boolean;
  profile: boolean;
  /** Exit non-zero unless every scenario that ran produced tailgate's rows (CI smoke runs). */
  check: boolean;
  /** --baseline-ref: an older commit run as the extra path `tailgate@<short sha>`. */
  baselineRef: string | undefined;
  /** --repeats: interleaved repetitions for throughput and setup (the run size's own when undefined). */
  repeats: number | undefined;
  /** --all: the scenarios that run on their own (setup-under-attack, setup-pool) too. */
  all: boolean;
  help: boolean;
}

/** What `--only` may name: every scenario by its name or by any row it produces, and a group by its name. */
export interface ScenarioNames {
  name: string;
  rows: readonly string[];
  group?: string;
  /** Left out of a full run (its own sizes would take most of the 10 minutes): run by `--only` or in `--quick`. */
  ownRun?: boolean;
}

export function parseArgs(argv: string[], table: readonly ScenarioNames[]): Options {
  const opts: Options = {
    quick: false,
    scenarios: table.filter((s) => !s.ownRun).map((s) => s.name),
    paths: [...ALL_PATHS],
    device: 'go',
    writeReadme: true,
    profile: false,
    check: false,
    baselineRef: undefined,
    repeats: undefined,
    all: false,
    help: false,
  };
  let partial = false;
  let only = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') opts.quick = true;
    else if (a === '--all') opts.all = true;
    else if (a.startsWith('--only')) {
      partial = true;
      only = true;
      const wanted = new Set<string>();
      for (const name of value().split(',')) {
        const named = table.filter((x) => x.name === name || x.rows.includes(name) || x.group === name);
        if (named.length === 0) {
          const groups = [...new Set(table.flatMap((x) => (x.group === undefined ? [] : [x.group])))];
          throw new Error(`unknown scenario ${name}; known: ${[...table.map((x) => x.name), ...table.flatMap((x) => x.rows.filter((r) => r !== x.name)), ...groups].join(', ')}`);
        }
        for (const s of named) wanted.add(s.name);
      }
      opts.scenarios = [...wanted];
    } else if (a.startsWith('--paths')) {
      partial = true;
      opts.paths = value().split(',') as PathName[];
      for (const p of opts.paths) if (!(ALL_PATHS as readonly string[]).includes(p)) throw new Error(`unknown path ${p}; known: ${ALL_PATHS.join(', ')} (an older tailgate: --baseline-ref)`);
    } else if (a.startsWith('--device')) {
      const d = value();
      if (d !== 'go' && d !== 'glider' && d !== 'node') throw new Error('--device is go, glider or node');
      opts.device = d;
    } else if (a.startsWith('--baseline-ref')) opts.baselineRef = value();
    else if (a.startsWith('--repeats')) {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 1 || n > 25) throw new Error('--repeats takes a whole number from 1 to 25');
      opts.repeats = n;
      partial = true;
    }
    else if (a === '--no-readme') opts.writeReadme = false;
    else if (a === '--profile') opts.profile = true;
    else if (a === '--check') opts.check = true;
    else if (a === '--help' || a === '-h') opts.help = true;
    else throw new Error(`unknown option ${a}`);
  }
  // A smoke run covers every scenario at its small sizes.
  if (!only && (opts.quick || opts.all)) opts.scenarios = table.map((s) => s.name);
  // README shows full runs of this checkout only; a smoke, partial or A/B run must not replace the published table.
  if (opts.quick || partial || opts.profile || opts.baselineRef !== undefined) opts.writeReadme = false;
  return opts;
}

export interface Sizes {
  throughputBytesEachWay: number;
  throughputRepeats: number;
  setupRepeats: number;
  setupDurationMs: number;
  idleTunnels: number;
  /** setup-under-attack: stalled handshakes kept open at once. */
  attackStalled: number;
  r2uTrials: number;
  gliderRestarts: number;
  churnMs: number;
  tailnetBytesEachWay: number;
  tailnetThroughputRepeats: number;
  tailnetSetupRepeats: number;
  tailnetSetupSliceMs: number;
  tailnetSetupWarmupTunnels: number;
  /** The `scale` group: bytes each way per throughput run, its repetitions, and the setup slices. */
  scaleBytesEachWay: number;
  scaleThroughputRepeats: number;
  scaleSetupRepeats: number;
  scaleSetupSliceMs: number;
  scaleSetupWarmupTunnels: number;
}

export const FULL: Sizes = {
  // 384 MiB each way made the full run 615 s on the slower machine type (results/2026-12-01T14-20-31Z).
  throughputBytesEachWay: 256 << 20,
  // Five repetitions and 6 s of setup slices made the full run 20 minutes once gost, node-floor, the scale group and
  // kernel mode joined it; the paired tool (bench/paired-cpu.ts) is the instrument for small differences.
  throughputRepeats: 3,
  setupRepeats: 3,
  setupDurationMs: 3_000,
  idleTunnels: 4_000,
  attackStalled: 10_000,
  r2uTrials: 40,
  gliderRestarts: 6,
  churnMs: 10_000,
  // Userspace tailscaled moves 50-90 MiB/s here: 256 MiB per run keeps the tailnet group near 2 minutes.
  tailnetBytesEachWay: 128 << 20,
  tailnetThroughputRepeats: 2,
  tailnetSetupRepeats: 3,
  tailnetSetupSliceMs: 2_000,
  tailnetSetupWarmupTunnels: 1024,
  // The group has four gateways on two listeners each and must stay near 90 s in all.
  scaleBytesEachWay: 128 << 20,
  scaleThroughputRepeats: 3,
  scaleSetupRepeats: 3,
  scaleSetupSliceMs: 1_000,
  scaleSetupWarmupTunnels: 256,
};

export const QUICK: Sizes = {
  throughputBytesEachWay: 128 << 20,
  throughputRepeats: 1,
  setupRepeats: 1,
  setupDurationMs: 1_000,
  idleTunnels: 1_000,
  attackStalled: 2_000,
  r2uTrials: 6,
  gliderRestarts: 2,
  churnMs: 2_000,
  tailnetBytesEachWay: 32 << 20,
  tailnetThroughputRepeats: 1,
  tailnetSetupRepeats: 1,
  tailnetSetupSliceMs: 1_000,
  tailnetSetupWarmupTunnels: 256,
  scaleBytesEachWay: 32 << 20,
  scaleThroughputRepeats: 1,
  scaleSetupRepeats: 1,
  scaleSetupSliceMs: 500,
  scaleSetupWarmupTunnels: 64,
};
