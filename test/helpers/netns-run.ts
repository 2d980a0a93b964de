// Runs a test file's tailnet tests inside a private network namespace: the test-runner side of the offline
// tailnet testbed (testbed/tailnet-scene.ts), which node:test files use and the benchmarks do not.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spawnInPrivateNetns } from '../../testbed/tailnet-scene.js';
import { requireTailnetTools, toolsEnv } from '../../testbed/tailnet-tools.js';

/**
 * Re-runs a test file inside a fresh network namespace (`unshare -n`, loopback up) with TAILGATE_E2E_NETNS=1, and
 * resolves with its exit code and output. Needs root (CAP_SYS_ADMIN), as CI and the dev machines have.
 */
export function runInPrivateNetns(testFile: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  // node:test marks its child processes with NODE_TEST_CONTEXT and would refuse to run files in a nested runner.
  const { NODE_TEST_CONTEXT: _nested, ...cleanEnv } = env;
  return new Promise((resolve, reject) => {
    const { child, sweep } = spawnInPrivateNetns(['--test', '--test-reporter=spec', '--test-timeout', String(timeoutMs), testFile], cleanEnv);
    let output = '';
    const take = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      output += text;
      process.stderr.write(text);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const timer = setTimeout(sweep, timeoutMs + 60_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run unshare (util-linux) to make a private network namespace: ${err.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      sweep();
      resolve({ code, output });
    });
  });
}

export interface NetnsRunSetup {
  env: NodeJS.ProcessEnv;
  teardown(): Promise<void>;
}

/**
 * For a test file whose tests need the scene: outside a private namespace, defines one test that re-runs the file
 * inside one and passes only if every inner test passed (none skipped). Returns true when the caller is inside and
 * should define its real tests. `setup` runs outside first (e.g. to create a database the namespace cannot reach by TCP).
 */
export function defineNetnsRun(testFile: string, name: string, timeoutMs: number, setup?: () => Promise<NetnsRunSetup>): boolean {
  if (process.env.TAILGATE_E2E_NETNS === '1') return true;
  test(`${name} (inside a private network namespace)`, { timeout: timeoutMs + 25 * 60_000 }, async () => {
    assert.equal(process.getuid?.(), 0, 'this test creates network namespaces (unshare -n) and must run as root');
    const tools = await requireTailnetTools();
    const extra = await setup?.();
    try {
      const { code, output } = await runInPrivateNetns(testFile, { ...process.env, ...toolsEnv(tools), ...extra?.env }, timeoutMs);
      assert.equal(code, 0, 'the tests inside the namespace failed; their report is above');
      assert.match(output, /ℹ pass [1-9]\d*/);
      assert.match(output, /ℹ fail 0/);
      assert.match(output, /ℹ skipped 0/);
    } finally {
      await extra?.teardown();
    }
  });
  return false;
}

/**
 * `step(name, fn)` defines a test of a scene file; on the file's first failure (a step's, or whatever calls diagnose())
 * it prints what `diagnostics` gathers, the scene's view of every node and the end of every log, before the failure.
 */
export function sceneSteps(diagnostics: () => Promise<string> | undefined): { step(name: string, fn: () => Promise<void> | void): void; diagnose(): Promise<void> } {
  let diagnosed = false;
  const diagnose = async () => {
    if (diagnosed) return;
    const gathering = diagnostics();
    if (gathering === undefined) return;
    diagnosed = true;
    const text = await gathering.catch((err: Error) => `scene diagnostics failed: ${err.message}`);
    process.stderr.write(`\n${text}\n`);
  };
  const step = (name: string, fn: () => Promise<void> | void) =>
    void test(name, async () => {
      try {
        await fn();
      } catch (err) {
        await diagnose();
        throw err;
      }
    });
  return { step, diagnose };
}
