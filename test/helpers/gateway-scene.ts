// The loopback scene a whole-gateway test file runs in: a database of its own on the local PostgreSQL (none for the
// embedded store), a temporary data directory, an HTTP device (the third-party `proxy` package), an HTTP target and an
// echo target; the gateways the file starts in it, in this process (app.ts) or as child processes (src/main.ts), and
// whatever else it owns. close() takes all of it down, the last started first, each part within a time limit.
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { startGateway, type Gateway, type GatewayParts } from '../../src/app.js';
import type { Config } from '../../src/config.js';
import { adminCall } from './connect-tunnel.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './db.js';
import { startHttpDevice, type Device } from './devices.js';
import { startGatewayProcess, type GatewayProcess } from './gateway-process.js';
import { startEchoTarget, startHttpTarget, type EchoTarget, type Listening } from './targets.js';
import { Teardown } from './teardown.js';

export interface GatewaySceneOptions {
  /** Names the database and the data directory. */
  label: string;
  /** `embedded`: no database is created (the gateway keeps its registry under a data directory). */
  store?: 'postgresql' | 'embedded';
  /** Where the device listens; 127.0.0.2 keeps it apart from the targets on 127.0.0.1. */
  deviceHost?: string;
}

/** One management API call (a file's own, over TLS say): status and parsed JSON. */
export type ApiCaller = (method: string, path: string, body?: unknown) => Promise<{ status: number; json: any }>;

/** The plain management API of a gateway, with the admin token it was started with. */
function plainApi(gw: Gateway | GatewayProcess): ApiCaller {
  const token = 'token' in gw ? gw.token : gw.config.adminToken;
  assert.ok(token, 'the gateway has an admin token');
  return (method, path, body) => adminCall(gw.ports.api, token, method, path, body);
}

const silent = pino({ level: 'silent' });

export class GatewayScene<Db extends TestDatabase | undefined = TestDatabase> {
  private readonly teardown = new Teardown();
  db!: Db;
  dataDir = '';
  device!: Device;
  web!: Listening;
  echo!: EchoTarget;

  private constructor() {}

  static async open(opts: GatewaySceneOptions & { store?: 'postgresql' }): Promise<GatewayScene>;
  static async open(opts: GatewaySceneOptions): Promise<GatewayScene<TestDatabase | undefined>>;
  static async open(opts: GatewaySceneOptions): Promise<GatewayScene<TestDatabase | undefined>> {
    const scene = new GatewayScene<TestDatabase | undefined>();
    try {
      scene.db = opts.store === 'embedded' ? undefined : scene.own('the database', await createTestDatabase(opts.label), (db) => db.drop());
      scene.dataDir = scene.own('the data directory', await createTempDir(`tailgate-${opts.label}`), (d) => d.remove()).dir;
      scene.device = scene.own('the device', await startHttpDevice(opts.deviceHost), (d) => d.close());
      scene.web = scene.own('the HTTP target', await startHttpTarget(), (t) => t.close());
      scene.echo = scene.own('the echo target', await startEchoTarget(), (t) => t.close());
    } catch (err) {
      await scene.close();
      throw err;
    }
    return scene;
  }

  /** Makes `part` the scene's to close (before everything started earlier); returns it. */
  own<T>(what: string, part: T, close: (part: T) => Promise<unknown> | unknown): T {
    return this.teardown.own(what, part, close);
  }

  /** A gateway in this process, closed with the scene. */
  async startGateway(config: Config, parts?: GatewayParts): Promise<Gateway> {
    return this.own('a gateway', await startGateway(config, silent, parts), (gw) => gw.close());
  }

  /** A gateway in a child process of its own (gateway-process.ts), stopped with the scene. */
  async startGatewayProcess(env: Record<string, string>, nodeArgs?: string[]): Promise<GatewayProcess> {
    return this.own('a gateway process', await startGatewayProcess(env, nodeArgs), (gw) => gw.stop());
  }

  /** Binds `key` to the scene's device through POST /register on `gw` (or through `gw`); resolves with the device's id. */
  async registerDevice(gw: Gateway | GatewayProcess | ApiCaller, key: string, name?: string): Promise<number> {
    const api = typeof gw === 'function' ? gw : plainApi(gw);
    const r = await api('POST', '/register', { key, ip: this.device.host, port: this.device.port, name });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const bound = await api('GET', `/keys/${r.json.node.id}`);
    return bound.json.target.device;
  }

  async close(): Promise<void> {
    await this.teardown.run();
  }
}
