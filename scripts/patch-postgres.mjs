// Run by `npm ci` / `npm install` (postinstall): fixes three defects of the `postgres` client 3.4.9 that a database
// restart or a killed connection sets off, until a release carries fixes of its own. Each edit must match the
// installed code exactly once; any other version, or code that changed, stops the install with a message, so an upgrade
// cannot silently drop a fix. Idempotent: a file already patched is left as it is.
//
// 1. A write queued after a connection has lost its socket (the ROLLBACK that sql.begin sends after a failed
//    statement) ran on a null socket from a timer: an uncaught TypeError that ends the process
//    (porsager/postgres#1208, #1154, #1066).
// 2. A connection that lost its server in the middle of a query kept that query and the server's error, and handed
//    the error to the first query it ran after reconnecting (porsager/postgres#1223); one lost while it fetched the
//    array types at start-up also rejected that fetch with nobody listening: an unhandled rejection, which ends a
//    Node process by default.
// 3. A transaction or reserved connection whose connection closed went on sending its statements through the same
//    connection object once the pool had reconnected it for others: outside the transaction, committed one by one
//    (porsager/postgres#1215, #1216); releasing it put a connection another query was using back in the open queue;
//    and the statements queued behind it were never answered (a key-write group would have waited for ever).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const VERSION = '3.4.9';
const MARK = 'tailgate-patch';

const connectionEdits = [
  {
    why: 'a write on a connection without a socket fails its queries instead of throwing from a timer (1)',
    from: `  function nextWrite(fn) {
    const x = socket.write(chunk, fn)`,
    to: `  function nextWrite(fn) {
    if (socket === null) { // ${MARK} 1
      chunk = nextWriteTimer = null
      error(Errors.connection('CONNECTION_CLOSED', options))
      query = null
      return false
    }
    const x = socket.write(chunk, fn)`,
  },
  {
    why: 'a closed connection keeps no write of its old socket (1)',
    from: `    incomings = null
    clearImmediate(nextWriteTimer)
    socket.removeListener('data', data)`,
    to: `    incomings = null
    clearImmediate(nextWriteTimer)
    nextWriteTimer = chunk = null // ${MARK} 1
    socket.removeListener('data', data)`,
  },
  {
    why: 'a terminated connection keeps no write timer (1)',
    from: `    clearImmediate(nextWriteTimer)
    if (socket) {
      socket.removeListener('data', data)`,
    to: `    clearImmediate(nextWriteTimer)
    nextWriteTimer = chunk = null // ${MARK} 1
    if (socket) {
      socket.removeListener('data', data)`,
  },
  {
    why: 'a connection closed while it starts up fails its own start-up query and forgets its old session (2)',
    from: `    if (initial)
      return reconnect()
`,
    to: `    if (initial) { // ${MARK} 2
      query && queryError(query, Errors.connection('CONNECTION_CLOSED', options, socket))
      query = results = errorResponse = null
      result = new Result()
      return reconnect()
    }
`,
  },
  {
    why: 'the array types asked for at start-up, when their query fails, are not an unhandled rejection (2)',
    from: `        return fetchArrayTypes()
`,
    to: `        return fetchArrayTypes().catch(() => { /* ${MARK} 2: the connection's close handles it */ })
`,
  },
  {
    why: 'a closed connection forgets the query and the error of its old session (2)',
    from: `    !hadError && (query || sent.length) && error(Errors.connection('CONNECTION_CLOSED', options, socket))
`,
    // After a socket error its handler has failed what was outstanding then; a query sent between the error and the
    // close is failed here too, instead of being forgotten with the session.
    to: `    ;(query || sent.length) && error(Errors.connection('CONNECTION_CLOSED', options, socket)) // ${MARK} 2
    query = results = errorResponse = null
    result = new Result()
`,
  },
];

const indexEdits = [
  {
    why: 'a reserved connection that closed refuses further statements and is not released into the pool again (3)',
    from: `    move(c, reserved)
    c.reserved = () => queue.length`,
    to: `    move(c, reserved)
    let lost = null // ${MARK} 3
    c.onclose = (e) => {
      lost = e || Errors.connection('CONNECTION_CLOSED', options)
      while (queue.length)
        queue.shift().reject(lost)
    }
    c.reserved = () => queue.length`,
  },
  {
    why: 'release after the close is a no-op (3)',
    from: `    sql.release = () => {
      c.reserved = null
      onopen(c)
    }`,
    to: `    sql.release = () => {
      if (lost) // ${MARK} 3
        return
      c.onclose = null
      c.reserved = null
      onopen(c)
    }`,
  },
  {
    why: 'statements on a reserved connection that closed are refused (3)',
    from: `    function handler(q) {
      c.queue === full
        ? queue.push(q)
        : c.execute(q) || move(c, full)
    }
  }

  async function begin(options, fn) {`,
    to: `    function handler(q) {
      if (lost) // ${MARK} 3
        return q.reject(lost)
      c.queue === full
        ? queue.push(q)
        : c.execute(q) || move(c, full)
    }
  }

  async function begin(options, fn) {`,
  },
  {
    why: 'a transaction remembers that its connection closed (3)',
    from: `    let savepoints = 0
      , connection
      , prepare = null`,
    to: `    let savepoints = 0
      , connection
      , prepare = null
      , lost = null // ${MARK} 3`,
  },
  {
    why: 'the close is recorded as it rejects the transaction (3)',
    from: `        new Promise((_, reject) => connection.onclose = reject)`,
    to: `        new Promise((_, reject) => connection.onclose = (e) => { // ${MARK} 3
          lost = e || Errors.connection('CONNECTION_CLOSED', options)
          while (queries.length)
            queries.shift().reject(lost)
          reject(lost)
        })`,
  },
  {
    why: "a transaction's statements after its connection closed are refused, its ROLLBACK included (3)",
    from: `      function handler(q) {
        q.catch(e => uncaughtError || (uncaughtError = e))
        c.queue === full`,
    to: `      function handler(q) {
        q.catch(e => uncaughtError || (uncaughtError = e))
        if (lost) // ${MARK} 3
          return q.reject(lost)
        c.queue === full`,
  },
];

function patchFile(file, edits) {
  const text = readFileSync(file, 'utf8');
  if (text.includes(MARK)) return 'already patched';
  let out = text;
  for (const edit of edits) {
    const at = out.indexOf(edit.from);
    if (at < 0 || out.indexOf(edit.from, at + 1) >= 0) {
      throw new Error(`${file}: the code for "${edit.why}" is not there exactly once; postgres changed, review the fix`);
    }
    out = out.slice(0, at) + edit.to + out.slice(at + edit.from.length);
  }
  writeFileSync(file, out);
  return `patched (${createHash('sha256').update(out).digest('hex').slice(0, 12)})`;
}

const require = createRequire(path.join(process.cwd(), 'package.json'));
let root;
try {
  // The package's exports do not include package.json: from its CommonJS entry (cjs/src/index.js), three levels up.
  root = path.resolve(path.dirname(require.resolve('postgres')), '..', '..');
} catch {
  // Installed without its dependencies (npm ci --ignore-scripts, or postgres not yet there): nothing to patch.
  process.exit(0);
}
const { version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
if (version !== VERSION) {
  console.error(`scripts/patch-postgres.mjs: postgres ${version} is installed, the fixes are for ${VERSION}; check whether ${version} has them and update the script`);
  process.exit(1);
}
for (const dir of ['src', 'cjs/src']) {
  for (const [name, edits] of [['connection.js', connectionEdits], ['index.js', indexEdits]]) {
    const file = path.join(root, dir, name);
    const result = patchFile(file, edits);
    if (process.env.npm_config_loglevel !== 'silent') console.log(`postgres ${version} ${dir}/${name}: ${result}`);
  }
}
