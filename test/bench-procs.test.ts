// bench/lib/procs.ts processTreeStat: the bench's figure for a gateway with worker processes (the `scale` group's
// tailgate-w2) is the CPU of its whole process tree. Checked on real process trees: node processes that burn a known
// amount of CPU time and then idle, so that the sums can be compared with each process's own /proc figures.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, test } from 'node:test';
import { descendants, procStat, processTreeStat } from '../bench/lib/procs.js';

/** CPU seconds each burner spends before it idles (or exits): well above the 10 ms clock tick of /proc. */
const BURN_SECONDS = 0.3;
/** What /proc shows of that at least: its ticks count whole clock ticks, cpuUsage does not. */
const BURNED_SECONDS = BURN_SECONDS - 0.05;
/** A node -e program: burns BURN_SECONDS of its own CPU time, then idles or exits. */
const burner = (then: 'idle' | 'exit') =>
  `while (process.cpuUsage().user + process.cpuUsage().system < ${BURN_SECONDS * 1e6}); ${then === 'idle' ? 'setInterval(() => {}, 60000);' : ''}`;
/**
 * A parent that starts two burners and idles: it prints their pids, then `reaped` once both have exited (node reaps a
 * child before its exit event).
 */
const parent = (then: 'idle' | 'exit') => `
  const { spawn } = require('node:child_process');
  const kids = [0, 1].map(() => spawn(process.execPath, ['-e', ${JSON.stringify(burner(then))}], { stdio: 'ignore' }));
  console.log(JSON.stringify(kids.map((k) => k.pid)));
  let exited = 0;
  for (const k of kids) k.on('exit', () => { if (++exited === kids.length) console.log('reaped'); });
  setInterval(() => {}, 60000);
`;

const started: number[] = [];
after(() => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

function start(program: string): ChildProcess {
  const child = spawn(process.execPath, ['-e', program], { stdio: ['ignore', 'pipe', 'inherit'] });
  started.push(child.pid!);
  return child;
}

/** The lines the child prints, each as it comes; fails after timeoutMs. */
function nextLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => finish(new Error(`no line within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const end = text.indexOf('\n');
      if (end >= 0) finish(undefined, text.slice(0, end));
    };
    function finish(err?: Error, line?: string) {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      if (err) reject(err);
      else resolve(line!);
    }
    child.stdout!.on('data', onData);
  });
}

/** Waits until every pid has used at least `seconds` of CPU (so it is idle from then on). */
async function burned(pids: number[], seconds: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pids.every((pid) => procStat(pid).cpuSeconds >= seconds)) {
    if (Date.now() > deadline) throw new Error(`not burned within ${timeoutMs} ms: ${pids.map((p) => procStat(p).cpuSeconds).join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a process without children: the tree figure is its own (gost, glider, tailgate with one worker)', async () => {
  const child = start(burner('idle'));
  await burned([child.pid!], BURNED_SECONDS, 30_000);
  assert.deepEqual(descendants(child.pid!), []);
  assert.deepEqual(processTreeStat(child.pid!), procStat(child.pid!));
});

test('a parent with two live children: the tree figure is the sum of the three', async () => {
  const child = start(parent('idle'));
  const kids = JSON.parse(await nextLine(child, 30_000)) as number[];
  started.push(...kids);
  await burned(kids, BURNED_SECONDS, 30_000);
  assert.deepEqual(descendants(child.pid!).sort(), [...kids].sort());
  const tree = processTreeStat(child.pid!);
  const members = [child.pid!, ...kids].map(procStat);
  const sum = (k: 'cpuSeconds' | 'userSeconds' | 'minorFaults') => members.reduce((s, m) => s + m[k], 0);
  // The parent is idle but for its timers: a tick or two may fall between the reads.
  assert.ok(Math.abs(tree.cpuSeconds - sum('cpuSeconds')) <= 0.02, `tree ${tree.cpuSeconds} s, members ${sum('cpuSeconds')} s`);
  assert.ok(Math.abs(tree.userSeconds - sum('userSeconds')) <= 0.02, `tree ${tree.userSeconds} s, members ${sum('userSeconds')} s`);
  assert.ok(tree.minorFaults >= sum('minorFaults') - 50, `tree ${tree.minorFaults} faults, members ${sum('minorFaults')}`);
  assert.ok(tree.cpuSeconds >= procStat(child.pid!).cpuSeconds + 2 * BURNED_SECONDS);
});

test('children that exited and were reaped keep their CPU in the tree figure', async () => {
  const child = start(parent('exit'));
  await nextLine(child, 30_000);
  assert.equal(await nextLine(child, 30_000), 'reaped');
  assert.deepEqual(descendants(child.pid!), []);
  const own = procStat(child.pid!);
  const tree = processTreeStat(child.pid!);
  assert.ok(tree.cpuSeconds >= own.cpuSeconds + 2 * BURNED_SECONDS, `tree ${tree.cpuSeconds} s, the parent alone ${own.cpuSeconds} s`);
});

test('a pid that is gone gives NaN, as procStat does', () => {
  const st = processTreeStat(2 ** 22 + 1);
  assert.ok(Number.isNaN(st.cpuSeconds) && Number.isNaN(st.userSeconds) && Number.isNaN(st.minorFaults));
});
