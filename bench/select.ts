// Cost of choosing a device among 1,000 (issue 10: at most 5 µs per tunnel), in-process, no I/O:
//   node --import tsx bench/select.ts [--devices N] [--ms M]
// Rows: no session (least loaded, all devices equally loaded, so the random tie-break covers all of them; then with
// a country filter; then with a quarter of the devices at the lowest load, spread over the list); a session
// whose pin is warm; a fresh session per choice (rendezvous over every device, plus a new pin, evicting the oldest
// in a full table). Each row runs for --ms after a warm-up, and reports ns per choice by wall clock and by this
// process's CPU time (the latter holds up better on a shared machine), each the median of 5 runs.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { DeviceBoard } from '../src/tunnel/device-health.js';
import { type Candidate, DeviceSelector, type Selection } from '../src/tunnel/select.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const DEVICES = arg('--devices', 1000);
const RUN_MS = arg('--ms', 300);
const RUNS = 5;

const board = new DeviceBoard();
const selector = new DeviceSelector(board);
const devices: Candidate[] = [];
for (let i = 1; i <= DEVICES; i++) {
  devices.push({ id: i, name: `device-${i}`, labels: { country: i % 2 === 0 ? 'de' : 'fr' } });
  board.setOnline(i, true);
}
const set = selector.prepare(devices);

// Made up front, so the fresh-session row measures choosing, not building names.
const FRESH = 1 << 18;
const freshSelections: Selection[] = [];
for (let i = 0; i < FRESH; i++) freshSelections.push({ keyId: 7, session: `s${i.toString(36)}` });

let sink = 0;

/** ns per step: [wall clock, this process's CPU time], each the median of RUNS runs. */
function measure(step: (i: number) => void): [number, number] {
  for (let i = 0; i < 20_000; i++) step(i);
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let n = 0;
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    const end = start + RUN_MS;
    let now = start;
    while (now < end) {
      for (let k = 0; k < 1000; k++) step(n++);
      now = performance.now();
    }
    const used = process.cpuUsage(cpu0);
    wall.push(((now - start) * 1e6) / n);
    cpu.push(((used.user + used.system) * 1e3) / n);
  }
  return [median(wall), median(cpu)];
}

function median(xs: number[]): number {
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)]!;
}

function pick(sel: Selection): void {
  const d = selector.choose(set, sel);
  if (typeof d !== 'string') sink += d.id;
}

// What this machine takes for the least a choice could do: one pass over the two per-device arrays the chooser
// reads (eligibility and load), with no decision beyond a minimum.
const floorSlots = set.slots;
function floorPass(): void {
  const from = board.eligibleFrom;
  const open = board.openTunnels;
  const now = performance.now();
  let min = 0x7fffffff;
  for (let i = 0; i < floorSlots.length; i++) {
    const k = floorSlots[i]!;
    if (now >= from[k]! && open[k]! < min) min = open[k]!;
  }
  sink += min;
}

// Its own count, not the step index: measure() numbers the steps of every run from 0, which would make each run
// after the first start with sessions the run before pinned (warm pins, not fresh ones).
let fresh = 0;
function pickFresh(): void {
  pick(freshSelections[fresh++ % FRESH]!);
}

const noSession: Selection = { keyId: 7 };
const warm: Selection = { keyId: 7, session: 'warm_session' };
const country: Selection = { keyId: 7, country: 'DE' };
const ROWS: Record<string, (i: number) => void> = {
  'no session (least loaded)': () => pick(noSession),
  'no session, country filter (500 left)': () => pick(country),
  'no session, 1 in 4 least loaded': () => pick(noSession),
  'session, warm pin': () => pick(warm),
  'session, fresh (rendezvous + new pin)': pickFresh,
  'floor: one bare pass over the devices': floorPass,
};

// Each row runs in a process of its own: rows measured one after the other in one process influence each other
// through what the JIT has learnt (the shared measure loop is optimised for the first step function it saw).
const row = process.argv.indexOf('--row');
if (row >= 0) {
  const name = process.argv[row + 1]!;
  // A full pin table first, so every measured fresh session also evicts the oldest pin, as on a gateway that has
  // been seeing new sessions for a while.
  if (ROWS[name] === pickFresh) while (selector.pins.size < selector.pins.max) pickFresh();
  // Loads that differ: one tunnel on three devices of every four, so the choice is among the 250 others.
  if (name === 'no session, 1 in 4 least loaded') {
    for (const d of devices) if (d.id % 4 !== 0) board.tunnelOpened(board.state(d.id));
  }
  const [wall, cpu] = measure(ROWS[name]!);
  console.log(`${name.padEnd(40)} ${wall.toFixed(0).padStart(8)} ${cpu.toFixed(0).padStart(8)}`);
  if (sink < 0) console.log(sink);
} else {
  console.log(`choosing among ${DEVICES} devices (node ${process.version})`);
  console.log(`${''.padEnd(40)} ${'wall ns'.padStart(8)} ${'cpu ns'.padStart(8)}  per choice`);
  const own = fileURLToPath(import.meta.url);
  for (const name of Object.keys(ROWS)) {
    execFileSync(process.execPath, [...process.execArgv, own, ...process.argv.slice(2), '--row', name], { stdio: 'inherit' });
  }
  console.log(`load average: ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} CPUs`);
}
