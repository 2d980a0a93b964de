// What a results file says about the machine and the run: cores, kernel, pinning, load, descriptor limit.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { ENDPOINT_CPU, PROXY_CPU } from './harness.js';
import { round } from './measure.js';

// Taken when the benchmark's modules load, i.e. before it starts anything.
const LOAD_AT_START = os.loadavg().map((v) => Math.round(v * 100) / 100);

/** Raises RLIMIT_NOFILE (soft and hard) as far as allowed; returns the hard limit now in force. */
export function raiseFdLimit(want: number): number {
  const pid = String(process.pid);
  try {
    execFileSync('prlimit', ['--pid', pid, `--nofile=${want}:${want}`], { stdio: 'ignore' });
  } catch {
    // Not permitted: fall back to soft = hard below.
  }
  const hard = Number(execFileSync('prlimit', ['--pid', pid, '--nofile', '--output=HARD', '--noheadings'], { encoding: 'utf8' }).trim());
  try {
    execFileSync('prlimit', ['--pid', pid, `--nofile=${hard}:${hard}`], { stdio: 'ignore' });
  } catch {
    // keep whatever soft limit we have
  }
  return hard;
}

export function gitHead(repo: string): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

export function machineInfo(quick: boolean, fdHardLimit: number, idleTunnels: number): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    platform: `${os.platform()} ${os.arch()}`,
    network: 'loopback (127.0.0.1) only',
    pinning: {
      [`cpu${PROXY_CPU}`]: 'gateway under test + device proxy stand-in',
      [`cpu${ENDPOINT_CPU}`]: 'load generator + sink + orchestrator (registrations)',
      'scale-*': `cpu${PROXY_CPU},${ENDPOINT_CPU} = the gateway under test (tailgate-w1, tailgate-w2, gost, glider); device, load generator and sink as above`,
      'tailnet-*': `cpu${PROXY_CPU} = tailgate and tailgate-kernel + their tailscaleds + the device's tailscaled and proxy; cpu${ENDPOINT_CPU} = load generator + sink + headscale`,
    },
    mode: quick ? 'quick' : 'full',
    // Other work on the machine during the run skews every number: say how busy it was.
    loadAverageAtStart: LOAD_AT_START,
    loadAverageAtEnd: os.loadavg().map((v) => round(v)),
    openFileHardLimit: fdHardLimit,
    idleTunnelsMeasured: idleTunnels,
  };
}
