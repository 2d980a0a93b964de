// Summarises what `npm run bench -- --profile` leaves behind: the top functions by self time in each
// .cpuprofile, and the top object kinds by retained-here (self) size in each .heapsnapshot.
//   node --import tsx bench/profile-summary.ts <file or directory>... [--top N] [--inclusive] [--capped]
// --inclusive adds a table by inclusive time (the function and everything it called, each function counted once per
// sample even when it recurses): where no single function stands out by self time, it says which stage costs.
// --capped counts each sample for at most twice the median sampling interval. A sample's weight is the wall time
// since the previous one, so on a busy machine the time the process spent waiting for the core lands on whatever
// function it was in when it got the core back; capped, the weights stay close to CPU time.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

function summariseCpu(file: string, top: number): void {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: CpuNode[]; samples: number[]; timeDeltas: number[] };
  const byNode = new Map<number, number>();
  const deltas = [...prof.timeDeltas].sort((a, b) => a - b);
  const cap = capped ? 2 * (deltas[deltas.length >> 1] ?? 0) : Infinity;
  for (let i = 0; i < prof.samples.length; i++) byNode.set(prof.samples[i]!, (byNode.get(prof.samples[i]!) ?? 0) + Math.min(cap, prof.timeDeltas[i] ?? 0));
  const byFrame = new Map<string, number>();
  let total = 0;
  for (const n of prof.nodes) {
    const us = byNode.get(n.id) ?? 0;
    total += us;
    const key = frameKey(n);
    byFrame.set(key, (byFrame.get(key) ?? 0) + us);
  }
  console.log(`\n== ${file}: ${(total / 1e6).toFixed(2)} s sampled`);
  for (const [k, us] of [...byFrame].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  }
  if (!inclusive) return;
  // Busy time only: idle, the profiler's own root and (program) are not work any function did.
  const idle = new Set(['(root)', '(idle)', '(program)']);
  const parent = new Map<number, CpuNode>();
  const nodes = new Map<number, CpuNode>();
  for (const n of prof.nodes) {
    nodes.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n);
  }
  const busy = [...byNode].reduce((sum, [id, us]) => (idle.has(nodes.get(id)!.callFrame.functionName) ? sum : sum + us), 0);
  const inclusiveBy = new Map<string, number>();
  for (const [id, us] of byNode) {
    if (us === 0 || idle.has(nodes.get(id)!.callFrame.functionName)) continue;
    const counted = new Set<string>();
    for (let n: CpuNode | undefined = nodes.get(id); n !== undefined; n = parent.get(n.id)) {
      const key = frameKey(n);
      if (idle.has(n.callFrame.functionName) || counted.has(key)) continue;
      counted.add(key);
      inclusiveBy.set(key, (inclusiveBy.get(key) ?? 0) + us);
    }
  }
  console.log(`-- by inclusive time, % of ${(busy / 1e6).toFixed(2)} s busy`);
  for (const [k, us] of [...inclusiveBy].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * us) / busy).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  }
}

function frameKey(n: CpuNode): string {
  const f = n.callFrame;
  const where = f.url ? `${f.url.replace(/^.*\/(node_modules|dist|src)\//, '$1/').replace(/^node:/, 'node:')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
}

function summariseHeap(file: string, top: number): void {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const agg = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]!]!;
    const name = snap.strings[snap.nodes[i + iName]!]!;
    const size = snap.nodes[i + iSize]!;
    total += size;
    // Strings, code and arrays are grouped by kind; objects by constructor name.
    const key = type === 'object' || type === 'native' || type === 'closure' ? `${type} ${name}` : `(${type})`;
    const a = agg.get(key) ?? { count: 0, bytes: 0 };
    a.count++;
    a.bytes += size;
    agg.set(key, a);
  }
  console.log(`\n== ${file}: ${(total / 2 ** 20).toFixed(1)} MiB JS heap (self sizes)`);
  for (const [k, a] of [...agg].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, top)) {
    console.log(`${(a.bytes / 2 ** 20).toFixed(2).padStart(8)} MiB  ${String(a.count).padStart(8)} x ${String(Math.round(a.bytes / a.count)).padStart(6)} B  ${k}`);
  }
}

const args = process.argv.slice(2);
const topIdx = args.indexOf('--top');
const top = topIdx >= 0 ? Number(args.splice(topIdx, 2)[1]) : 25;
const inclusiveIdx = args.indexOf('--inclusive');
const inclusive = inclusiveIdx >= 0 && args.splice(inclusiveIdx, 1).length > 0;
const cappedIdx = args.indexOf('--capped');
const capped = cappedIdx >= 0 && args.splice(cappedIdx, 1).length > 0;
const files: string[] = [];
for (const a of args) {
  if (statSync(a).isDirectory()) for (const f of readdirSync(a).sort()) files.push(path.join(a, f));
  else files.push(a);
}
for (const f of files) {
  if (f.endsWith('.cpuprofile')) summariseCpu(f, top);
  else if (f.endsWith('.heapsnapshot')) summariseHeap(f, top);
}
