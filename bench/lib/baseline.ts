// `--baseline-ref <git ref>`: an older commit of tailgate, exported into a temporary directory and built
// there, so that it runs as one more path (`tailgate@<short sha>`) beside this checkout's tailgate.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildTailgate, type PathName } from './paths.js';
import { runStep } from './procs.js';

export interface BaselineCommit {
  ref: string;
  commit: string;
  path: PathName;
}

/** Resolves `ref` in this repository; throws when it names no commit. */
export function resolveBaseline(repo: string, ref: string): BaselineCommit {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  let commit: string;
  try {
    commit = git('rev-parse', '--verify', '--quiet', `${ref}^{commit}`);
  } catch {
    throw new Error(`--baseline-ref ${ref} names no commit of this repository`);
  }
  return { ref, commit, path: `tailgate@${git('rev-parse', '--short', commit)}` };
}

/**
 * The baseline's temporary checkout. The directory exists from construction on, so that `remove()` can be
 * called from anywhere (interrupt handler, failure, end of run) and always leaves nothing behind.
 */
export class BaselineCheckout {
  readonly dir: string;
  /** Set when this checkout's node_modules was linked in instead of installed. */
  private linkedModules: string | undefined;

  constructor(
    private readonly repo: string,
    readonly baseline: BaselineCommit,
  ) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), `tailgate-baseline-${baseline.commit.slice(0, 12)}-`));
  }

  /** Exports the commit, installs its dependencies and runs its own `npm run build`; returns how the dependencies came. */
  async build(): Promise<string> {
    const { commit } = this.baseline;
    await runStep('git archive', 'bash', ['-o', 'pipefail', '-c', 'git archive --format=tar "$1" | tar -x -C "$2"', 'bash', commit, this.dir], this.repo, 120_000);
    const lock = (dir: string) => {
      const file = path.join(dir, 'package-lock.json');
      return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
    };
    const ours = lock(this.repo);
    let how: string;
    if (ours !== undefined && ours === lock(this.dir) && existsSync(path.join(this.repo, 'node_modules'))) {
      // Same lock file, same tree: installing it again would only take minutes.
      this.linkedModules = path.join(this.dir, 'node_modules');
      symlinkSync(path.join(this.repo, 'node_modules'), this.linkedModules, 'dir');
      how = 'node_modules of this checkout (identical package-lock.json)';
    } else {
      await runStep('npm ci', 'npm', ['ci', '--no-audit', '--no-fund'], this.dir, 15 * 60_000);
      how = 'npm ci (its package-lock.json differs from this checkout’s)';
    }
    await buildTailgate(this.dir);
    return how;
  }

  version(): string {
    const pkg = JSON.parse(readFileSync(path.join(this.dir, 'package.json'), 'utf8')) as { version?: string };
    return `${pkg.version ?? 'unknown'} (${this.baseline.commit.slice(0, 12)}, --baseline-ref ${this.baseline.ref})`;
  }

  /** Synchronous, so the interrupt handler can call it before the process exits. */
  remove(): void {
    // Unlink the shared node_modules first: nothing below may ever reach into this checkout's own tree.
    if (this.linkedModules && lstatSync(this.linkedModules, { throwIfNoEntry: false })?.isSymbolicLink()) unlinkSync(this.linkedModules);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
