// DATABASE_URL in the forms libpq accepts, turned once, at configuration time, into explicit client options.
// The `postgres` client would parse the URL itself, but it passes unknown query parameters to the server as
// startup parameters (so `?host=/var/run/postgresql` was silently ignored) and it goes through WHATWG URL, which
// refuses `postgres://user@/db`. Here every part is resolved the way libpq resolves it, and anything tailgate
// cannot honour is refused instead of being dropped.
import { statSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/** The query parameters tailgate honours; any other one is refused. */
const PARAMETERS = ['host', 'port', 'user', 'password', 'dbname', 'sslmode', 'application_name'] as const;
type Parameter = (typeof PARAMETERS)[number];

/** libpq's socket directories, probed in this order when neither the URL nor PGHOST names a host. */
export const DEFAULT_SOCKET_DIRS = ['/var/run/postgresql', '/tmp'] as const;
const DEFAULT_PORT = 5432;

/** Where and how to connect, with every default already applied. */
export interface DatabaseTarget {
  /** A host name or IP address for TCP; for a unix socket, the socket directory (libpq's `host`). */
  host: string;
  /** The unix socket file, `<host>/.s.PGSQL.<port>`; undefined for TCP. */
  path: string | undefined;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  /** Ignored on a unix socket, as libpq ignores it there. */
  sslmode: SslMode;
  /** Set only when the URL sets application_name. */
  applicationName: string | undefined;
}

/** What the resolution reads from the machine; injected so that parsing stays testable. */
export interface DatabaseUrlSystem {
  isSocket(path: string): boolean;
  /** The operating-system user name, libpq's default user; undefined when it cannot be found. */
  userName(): string | undefined;
}

export const localSystem: DatabaseUrlSystem = {
  isSocket(path) {
    try {
      return statSync(path).isSocket();
    } catch {
      return false;
    }
  },
  userName() {
    try {
      return os.userInfo().username;
    } catch {
      // A uid without a passwd entry (common in containers).
      return process.env.USER ?? process.env.LOGNAME;
    }
  },
};

/** A DATABASE_URL tailgate cannot use. The message never contains the password. */
export class DatabaseUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUrlError';
  }
}

type Env = Record<string, string | undefined>;

interface UrlParts {
  user?: string;
  password?: string;
  host?: string;
  port?: string;
  database?: string;
  params: Partial<Record<Parameter, string>>;
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new DatabaseUrlError(`malformed percent-encoding in the ${what}`);
  }
}

const ENCODE_HINT = "percent-encode '@', ':', '/', '?' and '#' in the user name and password (for example '/' as %2F)";

/** Splits the URL into its libpq parts, percent-decoded; applies no defaults. */
function splitUrl(url: string): UrlParts {
  const scheme = /^postgres(?:ql)?:\/\//.exec(url);
  if (!scheme) throw new DatabaseUrlError('expected a postgres:// or postgresql:// URL');
  const rest = url.slice(scheme[0].length);
  const q = rest.indexOf('?');
  const beforeQuery = q === -1 ? rest : rest.slice(0, q);
  const query = q === -1 ? '' : rest.slice(q + 1);
  const slash = beforeQuery.indexOf('/');
  const authority = slash === -1 ? beforeQuery : beforeQuery.slice(0, slash);
  const pathPart = slash === -1 ? '' : beforeQuery.slice(slash + 1);

  const at = authority.lastIndexOf('@');
  // An '@' past the authority, outside the value of a parameter we know, means a password holding an unencoded
  // '/' or '?' cut the URL short; the pieces would otherwise be reported back as a parameter name or a database,
  // leaking part of the password.
  const cutShort = () => new DatabaseUrlError(`an '@' after the host part: ${ENCODE_HINT}`);
  if (at === -1 && pathPart.includes('@')) throw cutShort();

  const parts: UrlParts = { params: {} };
  if (at !== -1) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    const user = decode(colon === -1 ? userinfo : userinfo.slice(0, colon), 'user name');
    if (user !== '') parts.user = user;
    if (colon !== -1) {
      const password = decode(userinfo.slice(colon + 1), 'password');
      if (password !== '') parts.password = password;
    }
  }

  const hostspec = authority.slice(at + 1);
  // Not repeated either: without an '@' the host part may be a user name and password.
  if (hostspec.includes(',')) throw new DatabaseUrlError('several hosts in the URL are not supported: give one host');
  let hostText: string;
  let portText: string | undefined;
  if (hostspec.startsWith('[')) {
    const close = hostspec.indexOf(']');
    if (close === -1) throw new DatabaseUrlError("an IPv6 address without its closing ']'");
    hostText = hostspec.slice(1, close);
    const after = hostspec.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw new DatabaseUrlError("unexpected text after the IPv6 address's ']'");
    if (after !== '') portText = after.slice(1);
  } else {
    const colon = hostspec.indexOf(':');
    if (colon !== -1 && hostspec.indexOf(':', colon + 1) !== -1) {
      throw new DatabaseUrlError('an IPv6 address in the URL goes in brackets: postgres://user@[::1]:5432/db');
    }
    hostText = colon === -1 ? hostspec : hostspec.slice(0, colon);
    if (colon !== -1) portText = hostspec.slice(colon + 1);
  }
  const host = decode(hostText, 'host');
  if (host !== '') parts.host = host;
  if (portText !== undefined && portText !== '') {
    // Checked later, with the other sources of the port, but never repeated in a message: in a URL cut short by
    // an unencoded character it can be part of the password.
    parts.port = portText;
  }

  const database = decode(pathPart, 'database name');
  if (database !== '') parts.database = database;

  if (query !== '') {
    for (const pair of query.split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      const name = decode(eq === -1 ? pair : pair.slice(0, eq), 'query');
      const known = (PARAMETERS as readonly string[]).includes(name);
      if (at === -1 && pair.includes('@') && !(known && eq !== -1)) throw cutShort();
      if (eq === -1) throw new DatabaseUrlError(`query parameter ${JSON.stringify(name)} has no value (expected name=value)`);
      if (!known) {
        throw new DatabaseUrlError(`unknown query parameter ${JSON.stringify(name)} (tailgate accepts ${PARAMETERS.join(', ')})`);
      }
      // As in libpq, a parameter given twice takes its last value.
      parts.params[name as Parameter] = decode(pair.slice(eq + 1), `${name} parameter`);
    }
  }
  return parts;
}

function multipleHosts(hosts: string, source: string): DatabaseUrlError {
  return new DatabaseUrlError(`several hosts (${source} ${JSON.stringify(hosts)}) are not supported: give one host`);
}

/** The first of the given values that is set and not empty; libpq treats an empty value as not given. */
function pick(...values: (string | undefined)[]): string | undefined {
  for (const v of values) if (v !== undefined && v.trim() !== '') return v;
  return undefined;
}

/** `source` undefined: the port is from the URL itself and is not repeated (see splitUrl). */
function parsePort(text: string, source: string | undefined): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) {
    const what = source === undefined ? 'the port in the URL' : `${source} ${JSON.stringify(text)}`;
    throw new DatabaseUrlError(`${what} is not a number between 1 and 65535`);
  }
  return n;
}

function isHostName(host: string): boolean {
  return isIP(host) !== 0 || /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(host);
}

/**
 * Resolves DATABASE_URL as libpq would: query parameters override the URL's parts, PG* variables fill in what
 * both leave out, a host starting with '/' is a unix socket directory, and no host at all means the first default
 * socket directory holding the server's socket, else localhost. Throws DatabaseUrlError for anything tailgate
 * cannot honour.
 */
export function parseDatabaseUrl(url: string, env: Env, system: DatabaseUrlSystem = localSystem): DatabaseTarget {
  const parts = splitUrl(url);
  const p = parts.params;

  const portParam = pick(p.port);
  const envPort = pick(env.PGPORT)?.trim();
  let port = DEFAULT_PORT;
  if (portParam !== undefined) port = parsePort(portParam, 'port parameter');
  else if (parts.port !== undefined) port = parsePort(parts.port, undefined);
  else if (envPort !== undefined) port = parsePort(envPort, 'PGPORT');

  let host = pick(p.host, parts.host);
  if (host !== undefined && host.includes(',')) throw multipleHosts(host, 'host parameter');
  if (host === undefined) {
    host = pick(env.PGHOST)?.trim();
    if (host !== undefined && host.includes(',')) throw multipleHosts(host, 'PGHOST');
  }
  if (host === undefined) {
    host = DEFAULT_SOCKET_DIRS.find((dir) => system.isSocket(socketPath(dir, port))) ?? 'localhost';
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const path = host.startsWith('/') ? socketPath(host, port) : undefined;
  if (path === undefined && !isHostName(host)) {
    throw new DatabaseUrlError(`host ${JSON.stringify(host)} is neither a host name, an IP address nor a socket directory starting with '/'`);
  }

  const user = pick(p.user, parts.user, env.PGUSER) ?? system.userName();
  if (user === undefined) throw new DatabaseUrlError('no user name: give one in the URL (postgres://user@…) or in PGUSER');
  const password = pick(p.password, parts.password, env.PGPASSWORD);
  const database = pick(p.dbname, parts.database, env.PGDATABASE) ?? user;

  const sslText = pick(p.sslmode, env.PGSSLMODE)?.trim();
  if (sslText !== undefined && !(SSL_MODES as readonly string[]).includes(sslText)) {
    throw new DatabaseUrlError(`sslmode ${JSON.stringify(sslText)} is not one of ${SSL_MODES.join(', ')}`);
  }
  // Without sslmode the connection stays unencrypted, as it always has here (libpq's own default is prefer).
  const sslmode = (sslText ?? 'disable') as SslMode;

  return { host, path, port, user, password, database, sslmode, applicationName: pick(p.application_name) };
}

function socketPath(dir: string, port: number): string {
  return `${dir.replace(/\/+$/, '')}/.s.PGSQL.${port}`;
}

/**
 * The connection options of the `postgres` client for a target, every one explicit so that neither the client's
 * URL parsing nor its own PG* defaults come into play.
 */
export function clientConnectionOptions(target: DatabaseTarget) {
  return {
    // As arrays: given a string, the client splits host:port on ':' and would cut an IPv6 address apart. Its
    // typings only admit arrays on the parsed options, hence the casts.
    host: [target.host] as unknown as string,
    port: [target.port] as unknown as number,
    path: target.path,
    user: target.user,
    password: target.password,
    database: target.database,
    ssl: clientSsl(target),
    connection: { application_name: target.applicationName ?? 'tailgate' },
  };
}

function clientSsl(target: DatabaseTarget): false | 'prefer' | 'require' | 'verify-full' | { checkServerIdentity: () => undefined } {
  if (target.path !== undefined) return false;
  switch (target.sslmode) {
    case 'disable':
      return false;
    // The client cannot try plain first and TLS second; trying TLS first and falling back reaches the same servers.
    case 'allow':
    case 'prefer':
      return 'prefer';
    case 'require':
      return 'require';
    // Verify the certificate chain but not the host name, which is what verify-ca means.
    case 'verify-ca':
      return { checkServerIdentity: () => undefined };
    case 'verify-full':
      return 'verify-full';
  }
}

/**
 * The target as a URL for logs and messages: the password as ***, a unix socket as `?host=<dir>`
 * (postgres://postgres@/tailgate?host=/var/run/postgresql).
 */
export function describeDatabaseUrl(target: DatabaseTarget): string {
  const auth = `${encodeURIComponent(target.user)}${target.password !== undefined ? ':***' : ''}@`;
  const db = encodeURIComponent(target.database);
  if (target.path !== undefined) {
    const port = target.port === DEFAULT_PORT ? '' : `&port=${target.port}`;
    return `postgres://${auth}/${db}?host=${target.host}${port}`;
  }
  const host = isIP(target.host) === 6 ? `[${target.host}]` : target.host;
  const ssl = target.sslmode === 'disable' ? '' : `?sslmode=${target.sslmode}`;
  return `postgres://${auth}${host}:${target.port}/${db}${ssl}`;
}
