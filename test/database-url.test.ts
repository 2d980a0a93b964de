// DATABASE_URL in every form tailgate accepts: how each one resolves, what is refused and how, and real
// connections to the local PostgreSQL through its unix socket (/var/run/postgresql, user postgres, trust auth).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import {
  clientConnectionOptions,
  DatabaseUrlError,
  describeDatabaseUrl,
  parseDatabaseUrl,
  type DatabaseTarget,
  type DatabaseUrlSystem,
} from '../src/store/database-url.js';
import { openStore } from '../src/store/index.js';
import { createTempDir, createTestDatabase, type TestDatabase } from './helpers/db.js';

/** A machine with server sockets at exactly these paths and this OS user. */
function machine(sockets: string[] = [], userName: string | undefined = 'osuser'): DatabaseUrlSystem & { probed: string[] } {
  const probed: string[] = [];
  return {
    probed,
    isSocket(path) {
      probed.push(path);
      return sockets.includes(path);
    },
    userName: () => userName,
  };
}

const noSockets = machine();

function parse(url: string, env: Record<string, string> = {}, system: DatabaseUrlSystem = noSockets): DatabaseTarget {
  return parseDatabaseUrl(url, env, system);
}

/** The refusal's message, checked to be a DatabaseUrlError. */
function refusal(url: string, env: Record<string, string> = {}): string {
  try {
    parse(url, env);
  } catch (err) {
    assert.ok(err instanceof DatabaseUrlError, `expected DatabaseUrlError, got ${String(err)}`);
    return err.message;
  }
  assert.fail(`${url} was accepted`);
}

describe('parseDatabaseUrl: accepted forms', () => {
  test('postgres://user:pass@host:port/db?sslmode=…', () => {
    assert.deepEqual(parse('postgres://tailgate:s3cret@db.example.com:6543/registry?sslmode=require'), {
      host: 'db.example.com',
      path: undefined,
      port: 6543,
      user: 'tailgate',
      password: 's3cret',
      database: 'registry',
      sslmode: 'require',
      applicationName: undefined,
    });
  });

  test('postgresql:// is the same scheme, and the port defaults to 5432', () => {
    const t = parse('postgresql://tailgate@db/registry');
    assert.equal(t.host, 'db');
    assert.equal(t.port, 5432);
    assert.equal(t.password, undefined);
  });

  test('an IPv6 address in brackets, with and without a port', () => {
    const t = parse('postgres://tailgate@[::1]:5433/registry');
    assert.equal(t.host, '::1');
    assert.equal(t.port, 5433);
    assert.equal(t.path, undefined);
    assert.equal(parse('postgres://tailgate@[fd7a:115c:a1e0::1]/registry').host, 'fd7a:115c:a1e0::1');
    assert.equal(describeDatabaseUrl(t), 'postgres://tailgate@[::1]:5433/registry');
  });

  test('percent-encoded user, password and database name', () => {
    const t = parse('postgres://us%40er:p%40ss%2Fw%3Ard%3F%23@db/my%20db%2F1');
    assert.equal(t.user, 'us@er');
    assert.equal(t.password, 'p@ss/w:rd?#');
    assert.equal(t.database, 'my db/1');
  });

  test('a password may hold an unencoded @ and :, the last @ ends it', () => {
    const t = parse('postgres://tailgate:p@ss:w@db/registry');
    assert.equal(t.user, 'tailgate');
    assert.equal(t.password, 'p@ss:w');
    assert.equal(t.host, 'db');
  });

  test('query parameters override the parts of the URL, as in libpq', () => {
    const t = parse(
      'postgres://a:b@h1:1111/d1?host=h2&port=2222&user=u%202&password=p%262&dbname=d2&sslmode=verify-full&application_name=gw-1',
    );
    assert.deepEqual(t, {
      host: 'h2',
      path: undefined,
      port: 2222,
      user: 'u 2',
      password: 'p&2',
      database: 'd2',
      sslmode: 'verify-full',
      applicationName: 'gw-1',
    });
  });

  test("an '@' in the value of a parameter is taken as it is", () => {
    const t = parse('postgres://db/x?user=me@corp&password=p@ss&application_name=gw@eu');
    assert.deepEqual([t.user, t.password, t.applicationName], ['me@corp', 'p@ss', 'gw@eu']);
  });

  test('a parameter given twice takes its last value', () => {
    assert.equal(parse('postgres://db/x?port=1&port=2').port, 2);
  });

  test('host=/dir is a unix socket directory; the socket file carries the port', () => {
    const t = parse('postgres://postgres@localhost/tailgate?host=/var/run/postgresql');
    assert.equal(t.host, '/var/run/postgresql');
    assert.equal(t.path, '/var/run/postgresql/.s.PGSQL.5432');
    assert.equal(parse('postgres://postgres@/tailgate?host=/run/pg/&port=5433').path, '/run/pg/.s.PGSQL.5433');
    assert.equal(parse('postgres://postgres@db:5433/tailgate?host=/run/pg').path, '/run/pg/.s.PGSQL.5433');
  });

  test('a percent-encoded socket directory in the host position', () => {
    const t = parse('postgres://%2Fvar%2Frun%2Fpostgresql/tailgate', { PGUSER: 'postgres' });
    assert.equal(t.path, '/var/run/postgresql/.s.PGSQL.5432');
    assert.equal(t.user, 'postgres');
    assert.equal(parse('postgres://postgres@%2Ftmp:5499/tailgate').path, '/tmp/.s.PGSQL.5499');
  });

  test('an empty host takes PGHOST when it is set (a directory or a name)', () => {
    assert.equal(parse('postgres:///tailgate', { PGHOST: '/custom/dir' }).path, '/custom/dir/.s.PGSQL.5432');
    const tcp = parse('postgres://postgres@/tailgate', { PGHOST: 'db.internal', PGPORT: '6000' });
    assert.equal(tcp.host, 'db.internal');
    assert.equal(tcp.port, 6000);
    assert.equal(tcp.path, undefined);
  });

  test('an empty host without PGHOST: the first of /var/run/postgresql, /tmp holding the socket, else localhost', () => {
    const both = machine(['/var/run/postgresql/.s.PGSQL.5432', '/tmp/.s.PGSQL.5432']);
    assert.equal(parse('postgres:///tailgate', {}, both).path, '/var/run/postgresql/.s.PGSQL.5432');

    const tmpOnly = machine(['/tmp/.s.PGSQL.5432']);
    assert.equal(parse('postgres://postgres@/tailgate', {}, tmpOnly).path, '/tmp/.s.PGSQL.5432');

    // The probe looks for the socket of the port asked for.
    const other = machine(['/var/run/postgresql/.s.PGSQL.5432']);
    const t = parse('postgres://postgres@:5433/tailgate', {}, other);
    assert.deepEqual(other.probed, ['/var/run/postgresql/.s.PGSQL.5433', '/tmp/.s.PGSQL.5433']);
    assert.equal(t.host, 'localhost');
    assert.equal(t.path, undefined);
    assert.equal(t.port, 5433);
  });

  test('PG* variables fill in what the URL leaves out, and never override it', () => {
    const env = { PGUSER: 'envuser', PGPASSWORD: 'envpw', PGDATABASE: 'envdb', PGPORT: '5444', PGSSLMODE: 'prefer', PGHOST: 'envhost' };
    const filled = parse('postgres://', env);
    assert.deepEqual(
      [filled.host, filled.port, filled.user, filled.password, filled.database, filled.sslmode],
      ['envhost', 5444, 'envuser', 'envpw', 'envdb', 'prefer'],
    );
    const given = parse('postgres://u:p@h:1/d?sslmode=disable', env);
    assert.deepEqual(
      [given.host, given.port, given.user, given.password, given.database, given.sslmode],
      ['h', 1, 'u', 'p', 'd', 'disable'],
    );
  });

  test('the user defaults to the OS user and the database to the user, as in libpq', () => {
    const t = parse('postgres://db', {}, machine([], 'alice'));
    assert.equal(t.user, 'alice');
    assert.equal(t.database, 'alice');
    assert.equal(t.sslmode, 'disable');
    assert.equal(t.applicationName, undefined);
  });

  test('client options: explicit, application_name tailgate unless the URL sets one, no TLS on a socket', () => {
    const o = clientConnectionOptions(parse('postgres://u:p@[::1]:5433/d'));
    assert.deepEqual(o.host, ['::1']);
    assert.deepEqual(o.port, [5433]);
    assert.equal(o.path, undefined);
    assert.equal(o.ssl, false);
    assert.deepEqual(o.connection, { application_name: 'tailgate' });
    assert.deepEqual(clientConnectionOptions(parse('postgres://h/d?application_name=gw-7')).connection, { application_name: 'gw-7' });

    const ssl = (mode: string) => clientConnectionOptions(parse(`postgres://h/d?sslmode=${mode}`)).ssl;
    assert.equal(ssl('disable'), false);
    assert.equal(ssl('allow'), 'prefer');
    assert.equal(ssl('prefer'), 'prefer');
    assert.equal(ssl('require'), 'require');
    assert.equal(ssl('verify-full'), 'verify-full');
    const verifyCa = ssl('verify-ca');
    assert.ok(typeof verifyCa === 'object' && verifyCa.checkServerIdentity() === undefined);
    // libpq ignores sslmode on a unix socket; so does tailgate.
    assert.equal(clientConnectionOptions(parse('postgres:///d?host=/run/pg&sslmode=require')).ssl, false);
  });
});

describe('parseDatabaseUrl: refusals', () => {
  test('another scheme', () => {
    assert.match(refusal('mysql://u@h/d'), /expected a postgres:\/\/ or postgresql:\/\/ URL/);
  });

  test('an unknown query parameter is named, not sent to the server', () => {
    for (const name of ['connect_timeout', 'options', 'sslrootcert', 'target_session_attrs', 'search_path']) {
      const m = refusal(`postgres://u:pw@h/d?sslmode=disable&${name}=1`);
      assert.match(m, new RegExp(`unknown query parameter "${name}"`));
      assert.match(m, /accepts host, port, user, password, dbname, sslmode, application_name/);
    }
  });

  test('a query parameter without a value', () => {
    assert.match(refusal('postgres://h/d?sslmode'), /query parameter "sslmode" has no value/);
  });

  test('several hosts, in the URL, in host= and in PGHOST', () => {
    assert.equal(refusal('postgres://u@h1:5432,h2:5433/d'), 'several hosts in the URL are not supported: give one host');
    assert.equal(refusal('postgres://u@/d?host=h1,h2'), 'several hosts (host parameter "h1,h2") are not supported: give one host');
    assert.match(refusal('postgres://u@/d', { PGHOST: '/a,/b' }), /several hosts \(PGHOST "\/a,\/b"\)/);
  });

  test('a bad port, wherever it comes from', () => {
    assert.match(refusal('postgres://h:99999/d'), /^the port in the URL is not a number between 1 and 65535$/);
    assert.match(refusal('postgres://h:0/d'), /the port in the URL is not a number/);
    assert.match(refusal('postgres://h/d?port=abc'), /port parameter "abc" is not a number between 1 and 65535/);
    assert.match(refusal('postgres:///d', { PGPORT: '5432x' }), /PGPORT "5432x" is not a number/);
  });

  test('an unknown sslmode', () => {
    assert.match(refusal('postgres://h/d?sslmode=on'), /sslmode "on" is not one of disable, allow, prefer, require, verify-ca, verify-full/);
    assert.match(refusal('postgres://h/d', { PGSSLMODE: 'strict' }), /sslmode "strict"/);
  });

  test('an IPv6 address without brackets, or with a broken one', () => {
    assert.match(refusal('postgres://u@::1/d'), /IPv6 address in the URL goes in brackets/);
    assert.match(refusal('postgres://u@[::1/d'), /without its closing '\]'/);
    assert.match(refusal('postgres://u@[::1]x/d'), /unexpected text after/);
  });

  test('a host that is neither a name, an address nor an absolute socket directory', () => {
    assert.match(refusal('postgres://u@/d?host=var/run/postgresql'), /host "var\/run\/postgresql" is neither/);
    assert.match(refusal('postgres://u@bad%20host/d'), /host "bad host" is neither/);
  });

  test('no user name anywhere', () => {
    assert.throws(() => parse('postgres://h/d', {}, { isSocket: () => false, userName: () => undefined }), /no user name/);
  });

  test('refusals never repeat the password, even of a URL the password cut short', () => {
    // Each password is hunter2 with one character that ends the user-info part unless percent-encoded.
    const cases: [string, RegExp][] = [
      ['postgres://tailgate:hun%zzter2@h/d', /malformed percent-encoding in the password/],
      // The rest would look like a path, a parameter or a port.
      ['postgres://tailgate:hun/ter2@h/d', /an '@' after the host part: percent-encode/],
      ['postgres://tailgate:hun?ter2@h/d', /an '@' after the host part: percent-encode/],
      ['postgres://tailgate:hun?ter2=x@h/d', /an '@' after the host part: percent-encode/],
      ['postgres://tailgate:65536/d', /the port in the URL is not a number between 1 and 65535/],
      ['postgres://tailgate:hunter2/d', /the port in the URL is not a number between 1 and 65535/],
      ['postgres://tailgate:hun,ter2/d', /several hosts in the URL/],
      ['postgres://tailgate:hunter2@h/d?bogus=1', /unknown query parameter "bogus"/],
      ['postgres://tailgate:hunter2@h/d?sslmode=on', /sslmode "on"/],
    ];
    for (const [url, expected] of cases) {
      const m = refusal(url);
      assert.match(m, expected);
      for (const secret of ['hun', 'ter2', '65536']) assert.ok(!m.includes(secret), `${url}: ${m}`);
    }
  });
});

describe('describeDatabaseUrl', () => {
  test('TCP: the password as ***, the port always shown', () => {
    assert.equal(describeDatabaseUrl(parse('postgres://tailgate:s3cret@127.0.0.1/tailgate')), 'postgres://tailgate:***@127.0.0.1:5432/tailgate');
    assert.equal(describeDatabaseUrl(parse('postgres://tailgate@db:6543/tailgate?sslmode=require')), 'postgres://tailgate@db:6543/tailgate?sslmode=require');
  });

  test('a unix socket reads as host=<dir>, with the port only when it is not 5432', () => {
    assert.equal(
      describeDatabaseUrl(parse('postgres://%2Fvar%2Frun%2Fpostgresql/tailgate', { PGUSER: 'postgres' })),
      'postgres://postgres@/tailgate?host=/var/run/postgresql',
    );
    assert.equal(
      describeDatabaseUrl(parse('postgres://postgres:pw@/tailgate?host=/tmp&port=5433')),
      'postgres://postgres:***@/tailgate?host=/tmp&port=5433',
    );
  });
});

describe('real connections through the unix socket', () => {
  const SOCKET_DIR = '/var/run/postgresql';
  const log = createLogger('silent');
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('dburl');
  });
  after(() => db?.drop());

  /** Opens the store from DATABASE_URL as start-up does, and returns how its sessions reached the server. */
  async function connectVia(env: Record<string, string>): Promise<{ client_addr: string | null; application_name: string }[]> {
    const config = loadConfig(env);
    assert.ok(config.database, 'DATABASE_URL resolved');
    const store = await openStore({ database: config.database, dataDir: '/unused', log });
    try {
      assert.equal(await store.ping(), undefined);
      const sessions = await db.sql<{ client_addr: string | null; application_name: string }[]>`
        SELECT client_addr, application_name FROM pg_stat_activity
        WHERE datname = ${db.name} AND pid <> pg_backend_pid() AND application_name <> 'postgres.js'`;
      assert.ok(sessions.length > 0, 'the store has a session on the test database');
      return [...sessions];
    } finally {
      await store.close();
    }
  }

  /** Sessions over a unix socket have no client address. */
  function assertSocketSessions(sessions: { client_addr: string | null; application_name: string }[], app = 'tailgate'): void {
    for (const s of sessions) {
      assert.equal(s.client_addr, null, 'connected through the unix socket, not TCP');
      assert.equal(s.application_name, app);
    }
  }

  test('?host=/var/run/postgresql', async () => {
    assertSocketSessions(await connectVia({ DATABASE_URL: `postgres://postgres@localhost/${db.name}?host=${SOCKET_DIR}` }));
  });

  test('an empty host with PGHOST unset finds the socket in /var/run/postgresql', async () => {
    const saved = process.env.PGHOST;
    delete process.env.PGHOST;
    try {
      const env = { DATABASE_URL: `postgres://postgres@/${db.name}` };
      assert.equal(loadConfig(env).database?.path, `${SOCKET_DIR}/.s.PGSQL.5432`);
      assertSocketSessions(await connectVia(env));
    } finally {
      if (saved !== undefined) process.env.PGHOST = saved;
    }
  });

  test('a percent-encoded socket directory in the host position, with application_name', async () => {
    const url = `postgres://postgres@${encodeURIComponent(SOCKET_DIR)}/${db.name}?application_name=tailgate-socket-test`;
    assertSocketSessions(await connectVia({ DATABASE_URL: url }), 'tailgate-socket-test');
  });

  test('postgres:///db with PGHOST and PGUSER (the form the tailnet scene uses)', async () => {
    assertSocketSessions(await connectVia({ DATABASE_URL: `postgres:///${db.name}`, PGHOST: SOCKET_DIR, PGUSER: 'postgres' }));
  });

  test('host= naming a directory without a socket fails start-up naming the socket path', async () => {
    const empty = await createTempDir('tailgate-nosocket');
    try {
      const config = loadConfig({ DATABASE_URL: `postgres://postgres:pw-not-shown@/${db.name}?host=${empty.dir}` });
      await assert.rejects(openStore({ database: config.database, dataDir: '/unused', log }), (err: Error) => {
        assert.ok(
          err.message.startsWith(
            `database postgres://postgres:***@/${db.name}?host=${empty.dir}: no PostgreSQL server listening on the unix socket ${empty.dir}/.s.PGSQL.5432 (`,
          ),
          err.message,
        );
        assert.ok(!err.message.includes('pw-not-shown'));
        return true;
      });
    } finally {
      await empty.remove();
    }
  });

  test('an IPv6 address reaches the client whole', async () => {
    // Nothing listens on [::1]:1; the refusal shows the client dialled ::1 rather than a host cut at its first ':'.
    const config = loadConfig({ DATABASE_URL: `postgres://postgres@[::1]:1/${db.name}` });
    await assert.rejects(openStore({ database: config.database, dataDir: '/unused', log }), /database postgres:\/\/postgres@\[::1\]:1\/.*ECONNREFUSED ::1:1/);
  });
});
