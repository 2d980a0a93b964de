// The opening of a scene test file: the pinned tools, a temporary directory, the scene inside it, the database the outer
// test created (TAILGATE_E2E_DATABASE) and the two destinations on the scene's control address.
import assert from 'node:assert/strict';
import { createTempDir } from './db.js';
import { startEcho, startWhoami } from './tailnet-clients.js';
import { CONTROL_IP, TailnetScene } from '../../testbed/tailnet-scene.js';
import { requireTailnetTools } from '../../testbed/tailnet-tools.js';

export interface OpenedScene {
  tmp: { dir: string; remove(): Promise<void> };
  scene: TailnetScene;
  database: string;
  whoami: Awaited<ReturnType<typeof startWhoami>>;
  echo: Awaited<ReturnType<typeof startEcho>>;
}

/** `then` runs once the scene is up; if it fails, `diagnose` prints the scene's state before the error goes on. */
export async function openScene(label: string, then: (s: OpenedScene) => Promise<void>, diagnose: () => Promise<void>): Promise<OpenedScene> {
  const tools = await requireTailnetTools();
  const tmp = await createTempDir(label);
  const scene = await TailnetScene.start(tools, tmp.dir);
  const database = process.env.TAILGATE_E2E_DATABASE;
  assert.ok(database, 'TAILGATE_E2E_DATABASE is set by the outer test');
  const opened: OpenedScene = { tmp, scene, database, whoami: await startWhoami(CONTROL_IP), echo: await startEcho(CONTROL_IP) };
  try {
    await then(opened);
  } catch (err) {
    await diagnose();
    throw err;
  }
  return opened;
}
