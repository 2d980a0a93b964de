// The fuzz loop's thread (see run.ts): runs the inputs it is given and reports progress, the end, or a finding.
import { parentPort, workerData } from 'node:worker_threads';
import { fuzzLoop } from './run.js';

const data = workerData as { seed: number; inputs: number; only?: string[]; progress: Int32Array };
await fuzzLoop(data, data.progress, (msg) => parentPort!.postMessage(msg));
