// The fuzz loop and its watchdog. Input i of a run is made from (seed, i) alone, so a finding is reproduced from two
// numbers, and its bytes are written to a file. The loop runs in a worker thread; the main thread watches a shared
// progress counter, so an input that hangs synchronous code (which no in-thread timer could interrupt) is caught
// too: the worker is terminated and the input regenerated here from (seed, i).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FastifyInstance } from 'fastify';
import { rng } from '../helpers/random.js';
import { apiTarget, createFuzzApi } from './api.js';
import { SYNC_TARGETS, type FuzzTarget } from './targets.js';

export interface FuzzOptions {
  inputs: number;
  seed: number;
  /** Where a finding's input goes. */
  outDir: string;
  /** An input not finished within this long is a hang. */
  hangMs?: number;
  /** Only these targets (by name). */
  only?: readonly string[];
  /** Called about every `progressEvery` inputs. */
  onProgress?: (done: number, elapsedMs: number) => void;
}

export interface FuzzFindingReport {
  target: string;
  index: number;
  kind: 'crash' | 'hang';
  message: string;
  file: string;
}

export interface FuzzResult {
  seed: number;
  inputs: number;
  perTarget: Record<string, number>;
  elapsedMs: number;
  inputsPerSecond: number;
  finding: FuzzFindingReport | null;
}

/** The targets, with the API one bound to an app made on first use. */
export function targets(appRef: () => FastifyInstance): FuzzTarget[] {
  return [...SYNC_TARGETS, apiTarget(appRef)];
}

/** Which target input `index` goes to, and the rng that makes it: both from (seed, index) only. */
export function inputFor(all: readonly FuzzTarget[], seed: number, index: number): { target: FuzzTarget; r: () => number; input: Buffer } {
  const r = rng((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0);
  const total = all.reduce((n, t) => n + t.weight, 0);
  let pickAt = r() * total;
  let target = all[all.length - 1]!;
  for (const t of all) {
    if ((pickAt -= t.weight) < 0) {
      target = t;
      break;
    }
  }
  return { target, r, input: target.generate(r) };
}

export const PROGRESS_EVERY = 10_000;

/** The loop itself (in the worker): writes the index under way into `progress[0]`, the count done into `progress[1]`. */
export async function fuzzLoop(opts: { seed: number; inputs: number; only?: readonly string[] }, progress: Int32Array, report: (msg: unknown) => void): Promise<void> {
  let app: FastifyInstance | undefined;
  let all = targets(() => app!);
  if (opts.only !== undefined && opts.only.length > 0) all = all.filter((t) => opts.only!.includes(t.name));
  if (all.some((t) => t.name === 'api-json')) app = await createFuzzApi();
  const perTarget: Record<string, number> = Object.fromEntries(all.map((t) => [t.name, 0]));
  let index = 0;
  try {
    for (; index < opts.inputs; index++) {
      Atomics.store(progress, 0, index);
      const { target, r, input } = inputFor(all, opts.seed, index);
      const done = target.run(input, r);
      if (done !== undefined) await done;
      perTarget[target.name]!++;
      Atomics.store(progress, 1, index + 1);
      if ((index + 1) % PROGRESS_EVERY === 0) report({ kind: 'progress', done: index + 1 });
    }
    report({ kind: 'done', perTarget });
  } catch (err) {
    const { target } = inputFor(all, opts.seed, index);
    report({ kind: 'crash', index, target: target.name, message: err instanceof Error ? (err.stack ?? err.message) : String(err), perTarget });
  } finally {
    await app?.close();
  }
}

function writeFinding(outDir: string, seed: number, index: number, only: readonly string[] | undefined, kind: string, message: string): { file: string; target: string } {
  let all = targets(() => {
    throw new Error('not used to generate');
  });
  if (only !== undefined && only.length > 0) all = all.filter((t) => only.includes(t.name));
  const { target, input } = inputFor(all, seed, index);
  mkdirSync(outDir, { recursive: true });
  const base = path.join(outDir, `${target.name}-seed${seed}-input${index}`);
  writeFileSync(`${base}.bin`, input);
  writeFileSync(`${base}.json`, `${JSON.stringify({ target: target.name, seed, index, only, kind, message, replay: `npm run fuzz -- --seed ${seed} --replay ${index}${only?.length ? ` --only ${only.join(',')}` : ''}`, inputHex: input.toString('hex') }, null, 2)}\n`);
  return { file: `${base}.bin`, target: target.name };
}

const WORKER = new URL('./worker.ts', import.meta.url).href;

export function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  const hangMs = opts.hangMs ?? 5_000;
  const shared = new Int32Array(new SharedArrayBuffer(8));
  // The worker needs tsx's loader; a worker does not inherit --import.
  const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(WORKER)}); })`;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const worker = new Worker(boot, { eval: true, workerData: { seed: opts.seed, inputs: opts.inputs, only: opts.only, progress: shared } });
    let lastDone = -1;
    let lastChange = performance.now();
    let settled = false;
    const finish = (finding: FuzzFindingReport | null, perTarget: Record<string, number>) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      const elapsedMs = performance.now() - started;
      const inputs = Object.values(perTarget).reduce((a, b) => a + b, 0);
      resolve({ seed: opts.seed, inputs, perTarget, elapsedMs, inputsPerSecond: inputs / (elapsedMs / 1000), finding });
      void worker.terminate();
    };
    const watchdog = setInterval(() => {
      const done = Atomics.load(shared, 1);
      const now = performance.now();
      if (done !== lastDone) {
        lastDone = done;
        lastChange = now;
        return;
      }
      if (now - lastChange < hangMs) return;
      const index = Atomics.load(shared, 0);
      const message = `input ${index} did not finish within ${hangMs} ms`;
      const { file, target } = writeFinding(opts.outDir, opts.seed, index, opts.only, 'hang', message);
      finish({ target, index, kind: 'hang', message, file }, { 'all targets': done });
    }, Math.min(250, hangMs / 4));
    worker.on('message', (msg: { kind: string; done?: number; index?: number; target?: string; message?: string; perTarget?: Record<string, number> }) => {
      if (msg.kind === 'progress') opts.onProgress?.(msg.done!, performance.now() - started);
      else if (msg.kind === 'done') finish(null, msg.perTarget!);
      else if (msg.kind === 'crash') {
        const { file } = writeFinding(opts.outDir, opts.seed, msg.index!, opts.only, 'crash', msg.message!);
        finish({ target: msg.target!, index: msg.index!, kind: 'crash', message: msg.message!, file }, msg.perTarget!);
      }
    });
    worker.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      reject(err);
    });
    worker.on('exit', (code) => {
      if (!settled) {
        settled = true;
        clearInterval(watchdog);
        reject(new Error(`fuzz worker exited with code ${code} before reporting`));
      }
    });
  });
}

/** Runs one input in this thread (replay of a finding): throws what the target throws. */
export async function replay(seed: number, index: number, only?: readonly string[]): Promise<string> {
  let app: FastifyInstance | undefined;
  let all = targets(() => app!);
  if (only !== undefined && only.length > 0) all = all.filter((t) => only.includes(t.name));
  const { target, r, input } = inputFor(all, seed, index);
  if (target.name === 'api-json') app = await createFuzzApi();
  try {
    await target.run(input, r);
  } finally {
    await app?.close();
  }
  return `${target.name} input ${index} (${input.length} bytes): no finding`;
}
