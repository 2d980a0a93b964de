// Joining the tailnet: `tailscale up` with the auth key, at start (NeedsLogin) and again when control logged us out.
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TailnetConfig } from './types.js';
import type { Logger } from '../log.js';
import { childEnv, scrubSecrets } from './tailscaled-process.js';

/** Runs `tailscale up` within `timeoutMs`; rejects when it fails, or with the signal's reason once that aborts. */
export type JoinTailnet = (timeoutMs: number, signal: AbortSignal) => Promise<void>;

export function joinWithAuthKey(cfg: TailnetConfig, log: Logger): JoinTailnet {
  return async (timeoutMs, signal) => {
    signal.throwIfAborted();
    // The key reaches `tailscale up` through a 0600 file: never its argv (visible in ps) nor its environment.
    const keyFile = path.join(cfg.stateDir, `.authkey-${process.pid}`);
    await writeFile(keyFile, cfg.authKey, { mode: 0o600 });
    const timeoutS = Math.max(1, Math.ceil(timeoutMs / 1000));
    const args = [`--socket=${cfg.socket}`, 'up', '--reset', `--auth-key=file:${keyFile}`, `--hostname=${cfg.hostname}`, '--accept-dns=false', `--timeout=${timeoutS}s`];
    if (cfg.loginServer) args.push(`--login-server=${cfg.loginServer}`);
    args.push(...cfg.upExtraArgs);
    log.info({ loginServer: cfg.loginServer ?? '(tailscale default)', hostname: cfg.hostname }, 'joining the tailnet (tailscale up)');
    try {
      await new Promise<void>((resolve, reject) => {
        const proc = spawn(cfg.tailscaleBin, args, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
        const cancel = () => proc.kill('SIGTERM');
        signal.addEventListener('abort', cancel, { once: true });
        const output: string[] = [];
        const collect = (chunk: Buffer) => output.push(scrubSecrets(chunk.toString('utf8'), cfg.authKey));
        proc.stdout.on('data', collect);
        proc.stderr.on('data', collect);
        proc.once('error', (err) => {
          signal.removeEventListener('abort', cancel);
          reject(new Error(`cannot run ${cfg.tailscaleBin}: ${err.message}`));
        });
        proc.once('exit', (code, exitSignal) => {
          signal.removeEventListener('abort', cancel);
          const text = output.join('').trim().replace(/\s+/g, ' ').slice(0, 400);
          if (signal.aborted) reject(signal.reason);
          else if (code === 0) {
            if (text) log.info(`tailscale up: ${text}`);
            resolve();
          } else reject(new Error(`tailscale up failed (${exitSignal ?? `exit ${code}`}): ${text || 'no output'}`));
        });
      });
    } finally {
      await rm(keyFile, { force: true });
    }
  };
}
