// The scenario table of `npm run bench`: what each measures is in bench/README.md. A full run goes down it
// in this order; idle tunnels come last because closing 10,000 of them leaves ~30,000 sockets in TIME_WAIT
// for a minute.
import type { Scenario } from '../lib/harness.js';
import { churn } from './churn.js';
import { idle } from './idle.js';
import { registerToUsable } from './register-to-usable.js';
import { scaleSetup, scaleThroughput } from './scale.js';
import { setup } from './setup.js';
import { setupPool } from './setup-pool.js';
import { setupUnderAttack } from './setup-under-attack.js';
import { tailnetOverhead } from './tailnet-overhead.js';
import { throughput } from './throughput.js';
import { unauthorizedUnderChurn } from './unauthorized-under-churn.js';

export const SCENARIOS: readonly Scenario[] = [throughput(1), throughput(16), setup, scaleThroughput, scaleSetup, setupUnderAttack, setupPool, registerToUsable, churn, unauthorizedUnderChurn, tailnetOverhead, idle];
