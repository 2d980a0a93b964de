// The opening of a scene test file: the database the outer test creates (TAILGATE_E2E_DATABASE), then inside the
// namespace the pinned tools, a temporary directory, the scene inside it, the two destinations on the scene's control
// address and tailgate; and the end of the file, closing them all.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createTempDir, createTestDatabase } from './db.js';
import type { NetnsRunSetup } from './netns-run.js';
import { closeInTurn } from './teardown.js';
import { startEcho, startWhoami } from './tailnet-clients.js';
import { SceneGateway, type SceneGatewayOptions } from '../../testbed/tailnet-gateway.js';
import { CONTROL_IP, TailnetScene } from '../../testbed/tailnet-scene.js';
import { requireTailnetTools } from '../../testbed/tailnet-tools.js';

/** tailgate's listeners in the scene (its defaults: the namespace has them to itself). */
export const SCENE_PORTS = { http: 8081, socks: 1080, api: 9091 };
/** tailgate's TAILGATE_CONNECT_TIMEOUT_MS in the scene. */
export const SCENE_CONNECT_TIMEOUT_MS = 8_000;

/**
 * The setup for defineNetnsRun: a database created from outside (inside the namespace only the unix socket reaches
 * PostgreSQL), named to the inside in TAILGATE_E2E_DATABASE, dropped after the inner run.
 */
export function outerDatabase(label: string): () => Promise<NetnsRunSetup> {
  return async () => {
    const db = await createTestDatabase(label);
    return { env: { TAILGATE_E2E_DATABASE: db.name }, teardown: () => db.drop() };
  };
}

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

/** tailgate in the opened scene on SCENE_PORTS, with random tokens unless given; not started yet. */
export function sceneGateway(opened: OpenedScene, opts: Pick<SceneGatewayOptions, 'name'> & Partial<SceneGatewayOptions>): SceneGateway {
  return new SceneGateway(opened.scene, {
    database: opened.database,
    ports: SCENE_PORTS,
    adminToken: randomBytes(24).toString('hex'),
    enrollToken: randomBytes(24).toString('hex'),
    connectTimeoutMs: SCENE_CONNECT_TIMEOUT_MS,
    ...opts,
  });
}

/**
 * The end of a scene file: its gateways stopped (killed when SIGTERM is not enough), the destinations closed, the
 * scene's processes ended and its directory removed, unless TAILGATE_E2E_KEEP=1 keeps it to read the logs. Takes what
 * the file holds, which is only part of the scene when the start failed half way.
 */
export function closeScene(opened: Partial<Omit<OpenedScene, 'database'>>, gateways: (SceneGateway | undefined)[]): Promise<void> {
  const { tmp, scene, whoami, echo } = opened;
  return closeInTurn([
    ...gateways.map((gw) => ({ what: `gateway ${gw?.name}`, close: () => gw?.stop(20_000).catch(() => gw.kill()) })),
    {
      what: 'the destinations',
      close: () => {
        whoami?.server.close();
        echo?.server.close();
      },
    },
    { what: 'the scene', close: () => scene?.close() },
    { what: 'the scene directory', close: () => (process.env.TAILGATE_E2E_KEEP === '1' ? undefined : tmp?.remove()) },
  ]);
}
