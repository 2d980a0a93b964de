// Configuration is read from the environment once, at start, and validated as a whole so that an
// operator sees every mistake in one run instead of fixing them one restart at a time.
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { DeviceProtocol } from './core/route.js';
import { parseCidrList, type Cidr } from './core/cidr.js';
import { MALLOC_TRIM_THRESHOLD, onGlibc, setsTrimThreshold } from './core/malloc.js';
import type { HeadscaleConfig } from './headscale/types.js';
import { DatabaseUrlError, parseDatabaseUrl, type DatabaseTarget } from './store/database-url.js';
import type { TailnetConfig, TailnetDialMode } from './tailnet/types.js';
import type { Timeouts } from './tunnel/types.js';

export type { HeadscaleConfig, TailnetConfig, TailnetDialMode, Timeouts };

export interface Config {
  listenHost: string;
  httpPort: number;
  socksPort: number;
  apiPort: number;
  /** Where the management API binds: listenHost when a token protects it, loopback otherwise. */
  apiHost: string;
  adminToken: string | undefined;
  enrollToken: string | undefined;
  /** DATABASE_URL as given (it may hold the password: never log it). */
  databaseUrl: string | undefined;
  /** DATABASE_URL resolved into explicit connection settings; undefined selects the embedded database. */
  database: DatabaseTarget | undefined;
  /** A database call not answered this long is given up (503); a probe then decides whether the database is down. */
  databaseTimeoutMs: number;
  dataDir: string;
  allowCidrs: Cidr[];
  deviceDefaults: { port: number; protocol: DeviceProtocol };
  timeouts: Timeouts;
  keyCache: { max: number; positiveTtlMs: number; negativeTtlMs: number };
  /** How often open tunnels of keys with a quota are checked against it (the bound on how far past it they get). */
  quotaCheckMs: number;
  maxHeaderBytes: number;
  /** Usage accounting: how often deltas are written, and how many (hour, key, device) cells are held at most. */
  usage: { flushMs: number; maxCells: number };
  /** Per-key series in /metrics, labelled by key name (TAILGATE_METRICS_KEY_LABELS). */
  metricsKeyLabels: boolean;
  /** Client connections per proxy listener: 'auto' from the descriptor limit, 0 no cap (TAILGATE_MAX_CONNECTIONS). */
  maxConnections: number | 'auto';
  /** Brute-force throttle per client address; failuresPerMinute 0 turns it off. */
  authThrottle: { failuresPerMinute: number; cooldownMs: number };
  logLevel: string;
  /** auto: readable coloured lines when stdout is a terminal, JSON lines otherwise. */
  logFormat: LogFormat;
  tailnet: TailnetConfig | undefined;
  headscale: HeadscaleConfig | undefined;
  /** TLS listeners (TAILGATE_TLS_CERT and TAILGATE_TLS_KEY given); undefined: none. */
  tls: TlsConfig | undefined;
  /** The plain HTTP and SOCKS5 proxy listeners (TAILGATE_PLAIN_LISTENERS); off only when TLS is configured. */
  plainListeners: boolean;
  /** Processes that run the proxy listeners (TAILGATE_WORKERS); 1: the listeners run in this one process. */
  workers: number;
  /** Valid but risky settings, logged once at start. */
  warnings: string[];
}

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  httpsPort: number;
  socksTlsPort: number;
  /** The management API over TLS with the same pair (TAILGATE_API_TLS). */
  api: boolean;
}

export type LogFormat = 'auto' | 'json' | 'pretty';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** Every variable tailgate reads; the compose.yaml test checks its environment names against this list. */
export const CONFIG_VARIABLES = [
  'TAILGATE_HTTP_PORT',
  'TAILGATE_SOCKS_PORT',
  'TAILGATE_API_PORT',
  'TAILGATE_LISTEN_HOST',
  'TAILGATE_API_HOST',
  'TAILGATE_ADMIN_TOKEN',
  'TAILGATE_ENROLL_TOKEN',
  'DATABASE_URL',
  'TAILGATE_DATABASE_TIMEOUT_MS',
  'TAILGATE_DATA_DIR',
  'TAILGATE_ALLOW_CIDRS',
  'TAILGATE_DEVICE_PORT',
  'TAILGATE_DEVICE_PROTOCOL',
  'TAILGATE_HANDSHAKE_TIMEOUT_MS',
  'TAILGATE_CONNECT_TIMEOUT_MS',
  'TAILGATE_RESPONSE_HEADER_TIMEOUT_MS',
  'TAILGATE_IDLE_TIMEOUT_MS',
  'TAILGATE_SHUTDOWN_GRACE_MS',
  'TAILGATE_KEY_CACHE_MAX',
  'TAILGATE_KEY_CACHE_TTL_MS',
  'TAILGATE_KEY_NEGATIVE_TTL_MS',
  'TAILGATE_MAX_HEADER_BYTES',
  'TAILGATE_USAGE_FLUSH_MS',
  'TAILGATE_USAGE_MAX_CELLS',
  'TAILGATE_METRICS_KEY_LABELS',
  'TAILGATE_QUOTA_CHECK_MS',
  'TAILGATE_AUTH_FAILURES_PER_MINUTE',
  'TAILGATE_MAX_CONNECTIONS',
  'TAILGATE_AUTH_COOLDOWN_MS',
  'TAILGATE_LOG_LEVEL',
  'TAILGATE_LOG_FORMAT',
  'TAILGATE_TLS_CERT',
  'TAILGATE_TLS_KEY',
  'TAILGATE_HTTPS_PORT',
  'TAILGATE_SOCKS_TLS_PORT',
  'TAILGATE_API_TLS',
  'TAILGATE_PLAIN_LISTENERS',
  'TS_AUTHKEY',
  'TS_LOGIN_SERVER',
  'TS_HOSTNAME',
  'TS_STATE_DIR',
  'TS_SOCKET',
  'TS_USERSPACE',
  'TS_DIAL_MODE',
  'TS_EXTRA_ARGS',
  'TS_TAILSCALED_EXTRA_ARGS',
  'TS_UP_TIMEOUT_MS',
  'TS_READY_TIMEOUT_MS',
  'TAILSCALED_BIN',
  'TAILSCALE_BIN',
  'HEADSCALE_URL',
  'HEADSCALE_API_KEY',
  'HEADSCALE_USER',
  'HEADSCALE_TIMEOUT_MS',
] as const;

/**
 * tailscaled's own variables: tailgate does not read them, but the tailscaled it supervises inherits the
 * environment (minus secrets), so they may be set for it (compose.yaml does).
 */
export const TAILSCALED_VARIABLES = ['TS_NO_LOGS_NO_SUPPORT', 'TS_DISABLE_PORTMAPPER', 'TS_DEBUG_USE_DERP_HTTP'] as const;

type Env = Record<string, string | undefined>;

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  str(name: string): string | undefined {
    const v = this.env[name];
    if (v === undefined) return undefined;
    const t = v.trim();
    return t === '' ? undefined : t;
  }

  int(name: string, def: number, min: number, max: number): number {
    const raw = this.str(name);
    if (raw === undefined) return def;
    if (!/^\d+$/.test(raw)) {
      this.problems.push(`${name}: expected a whole number, got ${JSON.stringify(raw)}`);
      return def;
    }
    const n = Number(raw);
    if (n < min || n > max) {
      this.problems.push(`${name}: ${n} is out of range (${min}..${max})`);
      return def;
    }
    return n;
  }

  port(name: string, def: number): number {
    return this.int(name, def, 0, 65535);
  }

  bool(name: string, def: boolean): boolean {
    const raw = this.str(name);
    if (raw === undefined) return def;
    const l = raw.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(l)) return true;
    if (['0', 'false', 'no', 'off'].includes(l)) return false;
    this.problems.push(`${name}: expected true or false, got ${JSON.stringify(raw)}`);
    return def;
  }

  oneOf<T extends string>(name: string, def: T, allowed: readonly T[]): T {
    const raw = this.str(name);
    if (raw === undefined) return def;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    this.problems.push(`${name}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
    return def;
  }

  host(name: string, def: string): string {
    const raw = this.str(name);
    if (raw === undefined) return def;
    if (isIP(raw) === 0 && !/^[A-Za-z0-9.-]+$/.test(raw)) {
      this.problems.push(`${name}: expected an IP address or host name, got ${JSON.stringify(raw)}`);
      return def;
    }
    return raw;
  }

  url(name: string): string | undefined {
    const raw = this.str(name);
    if (raw === undefined) return undefined;
    try {
      const u = new URL(raw);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      return raw.replace(/\/+$/, '');
    } catch {
      this.problems.push(`${name}: expected an http:// or https:// URL, got ${JSON.stringify(raw)}`);
      return undefined;
    }
  }

  secret(name: string, minLength: number): string | undefined {
    const raw = this.str(name);
    if (raw === undefined) return undefined;
    // Never echo a secret back, not even in a configuration error.
    if (raw.length < minLength) this.problems.push(`${name}: too short (at least ${minLength} characters)`);
    return raw;
  }

  words(name: string): string[] {
    const raw = this.str(name);
    return raw === undefined ? [] : raw.split(/\s+/);
  }
}

export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);
  const listenHost = r.host('TAILGATE_LISTEN_HOST', '0.0.0.0');
  const adminToken = r.secret('TAILGATE_ADMIN_TOKEN', 16);
  const enrollToken = r.secret('TAILGATE_ENROLL_TOKEN', 16);
  // Without a token the API would be open to anyone who can reach it, so it stays on loopback.
  const apiHost = adminToken ? r.host('TAILGATE_API_HOST', listenHost) : r.host('TAILGATE_API_HOST', '127.0.0.1');
  if (!adminToken && apiHost !== '127.0.0.1' && apiHost !== '::1' && apiHost !== 'localhost') {
    r.problems.push('TAILGATE_API_HOST: a non-loopback API address needs TAILGATE_ADMIN_TOKEN');
  }
  if (enrollToken && adminToken && enrollToken === adminToken) {
    r.problems.push('TAILGATE_ENROLL_TOKEN: must differ from TAILGATE_ADMIN_TOKEN');
  }

  const databaseUrl = r.str('DATABASE_URL');
  let database: DatabaseTarget | undefined;
  if (databaseUrl !== undefined) {
    try {
      database = parseDatabaseUrl(databaseUrl, env);
    } catch (err) {
      if (!(err instanceof DatabaseUrlError)) throw err;
      r.problems.push(`DATABASE_URL: ${err.message}`);
    }
  }
  const dataDir = path.resolve(r.str('TAILGATE_DATA_DIR') ?? './data');

  let allowCidrs: Cidr[] = [];
  const cidrRaw = r.str('TAILGATE_ALLOW_CIDRS') ?? '100.64.0.0/10,fd7a:115c:a1e0::/48';
  try {
    allowCidrs = parseCidrList(cidrRaw);
  } catch (err) {
    r.problems.push(`TAILGATE_ALLOW_CIDRS: ${(err as Error).message}`);
  }

  const connectMs = r.int('TAILGATE_CONNECT_TIMEOUT_MS', 10_000, 100, 600_000);
  const warnings: string[] = [];
  if (adminToken && r.str('TAILGATE_API_HOST') === undefined && (listenHost === '0.0.0.0' || listenHost === '::')) {
    warnings.push(
      `the management API listens on ${listenHost} (TAILGATE_LISTEN_HOST), which includes the addresses devices and customers ` +
        'reach; set TAILGATE_API_HOST to an address only operators reach (e.g. 127.0.0.1 behind an SSH tunnel or a private interface)',
    );
  }

  const config: Config = {
    listenHost,
    httpPort: r.port('TAILGATE_HTTP_PORT', 8081),
    socksPort: r.port('TAILGATE_SOCKS_PORT', 1080),
    apiPort: r.port('TAILGATE_API_PORT', 9091),
    apiHost,
    adminToken,
    enrollToken,
    databaseUrl,
    database,
    databaseTimeoutMs: r.int('TAILGATE_DATABASE_TIMEOUT_MS', 5_000, 100, 600_000),
    dataDir,
    allowCidrs,
    deviceDefaults: {
      port: r.int('TAILGATE_DEVICE_PORT', 8939, 1, 65535),
      protocol: r.oneOf<DeviceProtocol>('TAILGATE_DEVICE_PROTOCOL', 'http', ['http', 'socks5']),
    },
    timeouts: {
      handshakeMs: r.int('TAILGATE_HANDSHAKE_TIMEOUT_MS', 10_000, 100, 600_000),
      connectMs,
      responseHeaderMs: r.int('TAILGATE_RESPONSE_HEADER_TIMEOUT_MS', connectMs, 100, 3_600_000),
      idleMs: r.int('TAILGATE_IDLE_TIMEOUT_MS', 300_000, 1_000, 86_400_000),
      shutdownGraceMs: r.int('TAILGATE_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    },
    keyCache: {
      max: r.int('TAILGATE_KEY_CACHE_MAX', 100_000, 1, 10_000_000),
      positiveTtlMs: r.int('TAILGATE_KEY_CACHE_TTL_MS', 60_000, 0, 86_400_000),
      negativeTtlMs: r.int('TAILGATE_KEY_NEGATIVE_TTL_MS', 5_000, 0, 3_600_000),
    },
    quotaCheckMs: r.int('TAILGATE_QUOTA_CHECK_MS', 1_000, 50, 60_000),
    maxHeaderBytes: r.int('TAILGATE_MAX_HEADER_BYTES', 16_384, 1_024, 1_048_576),
    usage: {
      flushMs: r.int('TAILGATE_USAGE_FLUSH_MS', 5_000, 50, 3_600_000),
      maxCells: r.int('TAILGATE_USAGE_MAX_CELLS', 100_000, 1, 100_000_000),
    },
    metricsKeyLabels: r.bool('TAILGATE_METRICS_KEY_LABELS', false),
    maxConnections: (r.str('TAILGATE_MAX_CONNECTIONS') ?? 'auto') === 'auto' ? 'auto' : r.int('TAILGATE_MAX_CONNECTIONS', 0, 0, 10_000_000),
    authThrottle: {
      failuresPerMinute: r.int('TAILGATE_AUTH_FAILURES_PER_MINUTE', 20, 0, 100_000),
      cooldownMs: r.int('TAILGATE_AUTH_COOLDOWN_MS', 60_000, 100, 86_400_000),
    },
    logLevel: r.oneOf('TAILGATE_LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    logFormat: r.oneOf<LogFormat>('TAILGATE_LOG_FORMAT', 'auto', ['auto', 'json', 'pretty']),
    tailnet: undefined,
    headscale: undefined,
    tls: undefined,
    plainListeners: r.bool('TAILGATE_PLAIN_LISTENERS', true),
    workers: r.int('TAILGATE_WORKERS', os.availableParallelism(), 1, 1024),
    warnings,
  };
  // Worker processes get the tunable from the primary (src/workers/primary.ts); a single process has only what it was
  // started with, which `npm start` and the Docker image set.
  if (config.workers === 1 && !setsTrimThreshold(env.GLIBC_TUNABLES) && onGlibc()) {
    warnings.push(
      'GLIBC_TUNABLES sets no glibc.malloc.trim_threshold: relaying may cost up to twice the CPU per GiB; start tailgate with ' +
        `GLIBC_TUNABLES=glibc.malloc.trim_threshold=${MALLOC_TRIM_THRESHOLD} (README "The malloc trim threshold")`,
    );
  }

  // TLS: both files or neither. The files themselves are read and checked when the gateway starts (and on every change).
  const certFile = r.str('TAILGATE_TLS_CERT');
  const keyFile = r.str('TAILGATE_TLS_KEY');
  const apiTls = r.bool('TAILGATE_API_TLS', false);
  if (certFile !== undefined && keyFile !== undefined) {
    config.tls = {
      certFile: path.resolve(certFile),
      keyFile: path.resolve(keyFile),
      httpsPort: r.port('TAILGATE_HTTPS_PORT', 8443),
      socksTlsPort: r.port('TAILGATE_SOCKS_TLS_PORT', 1443),
      api: apiTls,
    };
    if (!apiTls && apiHost !== '127.0.0.1' && apiHost !== '::1' && apiHost !== 'localhost') {
      warnings.push(`the management API on ${apiHost} is plain HTTP, so the admin token crosses the network in clear text; set TAILGATE_API_TLS=true to serve it with the TLS certificate`);
    }
  } else if (certFile !== undefined || keyFile !== undefined) {
    r.problems.push(certFile === undefined ? 'TAILGATE_TLS_CERT: required when TAILGATE_TLS_KEY is set' : 'TAILGATE_TLS_KEY: required when TAILGATE_TLS_CERT is set');
  } else {
    if (apiTls) r.problems.push('TAILGATE_API_TLS: needs TAILGATE_TLS_CERT and TAILGATE_TLS_KEY');
    if (!config.plainListeners) r.problems.push('TAILGATE_PLAIN_LISTENERS: false leaves no proxy listener without TAILGATE_TLS_CERT and TAILGATE_TLS_KEY');
  }

  const authKey = r.secret('TS_AUTHKEY', 8);
  if (authKey !== undefined) {
    const stateDir = path.resolve(r.str('TS_STATE_DIR') ?? path.join(dataDir, 'tailscale'));
    config.tailnet = {
      authKey,
      loginServer: r.url('TS_LOGIN_SERVER'),
      hostname: r.host('TS_HOSTNAME', 'tailgate'),
      stateDir,
      socket: path.resolve(r.str('TS_SOCKET') ?? path.join(stateDir, 'tailscaled.sock')),
      userspace: r.bool('TS_USERSPACE', true),
      tailscaledBin: r.str('TAILSCALED_BIN') ?? 'tailscaled',
      tailscaleBin: r.str('TAILSCALE_BIN') ?? 'tailscale',
      // LocalAPI by default: measured as fast or faster than tailscaled's SOCKS5 server, honours our connect timeout,
      // tells refused from unreachable, and opens no unauthenticated TCP listener on the host (see README).
      dialMode: r.oneOf<TailnetDialMode>('TS_DIAL_MODE', 'localapi', ['localapi', 'socks5']),
      upExtraArgs: r.words('TS_EXTRA_ARGS'),
      tailscaledExtraArgs: r.words('TS_TAILSCALED_EXTRA_ARGS'),
      upTimeoutMs: r.int('TS_UP_TIMEOUT_MS', 60_000, 1_000, 600_000),
      readyTimeoutMs: r.int('TS_READY_TIMEOUT_MS', 30_000, 0, 600_000),
    };
  }

  const hsUrl = r.url('HEADSCALE_URL');
  const hsKey = r.secret('HEADSCALE_API_KEY', 8);
  const hsUser = r.str('HEADSCALE_USER');
  if (hsUrl || hsKey || hsUser) {
    if (!hsUrl) r.problems.push('HEADSCALE_URL: required when HEADSCALE_API_KEY or HEADSCALE_USER is set');
    if (!hsKey) r.problems.push('HEADSCALE_API_KEY: required when HEADSCALE_URL is set');
    if (!hsUser) r.problems.push('HEADSCALE_USER: required when HEADSCALE_URL is set');
    if (hsUrl && hsKey && hsUser) {
      config.headscale = { url: hsUrl, apiKey: hsKey, user: hsUser, timeoutMs: r.int('HEADSCALE_TIMEOUT_MS', 10_000, 100, 120_000) };
    }
  }

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}
