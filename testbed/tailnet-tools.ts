// The pinned headscale / tailscale binaries, built once by scripts/go-tools.sh into a cache outside the repo.
// Missing Go is a hard failure with a clear message: the tailnet test must never pass by not running.
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TailnetTools {
  headscale: string;
  tailscale: string;
  tailscaled: string;
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function fromEnv(): TailnetTools | undefined {
  const { HEADSCALE_BIN, TAILSCALE_BIN, TAILSCALED_BIN } = process.env;
  if (!HEADSCALE_BIN || !TAILSCALE_BIN || !TAILSCALED_BIN) return undefined;
  for (const bin of [HEADSCALE_BIN, TAILSCALE_BIN, TAILSCALED_BIN]) accessSync(bin, constants.X_OK);
  return { headscale: HEADSCALE_BIN, tailscale: TAILSCALE_BIN, tailscaled: TAILSCALED_BIN };
}

/** Builds the tools on first use (needs Go and the module proxy; minutes on a cold cache), then returns their paths. */
export function requireTailnetTools(timeoutMs = 20 * 60_000): Promise<TailnetTools> {
  const given = fromEnv();
  if (given) return Promise.resolve(given);
  return new Promise((resolve, reject) => {
    execFile('bash', [path.join(repoRoot, 'scripts/go-tools.sh')], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`scripts/go-tools.sh could not provide headscale/tailscale (the tailnet test needs them; it does not skip):\n${stderr.trim().slice(-2000)}`));
        return;
      }
      const vars = Object.fromEntries(
        stdout
          .split('\n')
          .map((l) => l.split('='))
          .filter((kv) => kv.length === 2) as [string, string][],
      );
      if (!vars.HEADSCALE_BIN || !vars.TAILSCALE_BIN || !vars.TAILSCALED_BIN) {
        reject(new Error(`scripts/go-tools.sh printed no tool paths:\n${stdout}`));
        return;
      }
      resolve({ headscale: vars.HEADSCALE_BIN, tailscale: vars.TAILSCALE_BIN, tailscaled: vars.TAILSCALED_BIN });
    });
  });
}

export function toolsEnv(tools: TailnetTools): Record<string, string> {
  return { HEADSCALE_BIN: tools.headscale, TAILSCALE_BIN: tools.tailscale, TAILSCALED_BIN: tools.tailscaled };
}
