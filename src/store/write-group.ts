// Group commit for registry writes. Every key write notifies (the change triggers of migrations 2 and 3), and
// PostgreSQL serialises the commits of notifying transactions across the whole server: each one holds a lock from its
// commit until its WAL record is flushed, so key writes committed one by one queue there one flush each, behind every
// other notifying writer on the server too. Writes asked for while a group is committing wait and go out together in
// the next group: one transaction, one flush, one turn at that lock for all of them. A group of one-statement writes
// is sent whole, BEGIN to COMMIT, without waiting for any answer in between, so it costs the gateway one round trip
// however many writes it holds. A write asked for when nothing is in flight starts at once: grouping adds no wait,
// it only gathers what arrives while the database is busy anyway. A write of several statements (it reads what it then
// writes) keeps a transaction of its own, in its turn.
//
// Should any write of a group be refused (a key in use, an unknown device), the server has rolled the whole group
// back and nothing of it was written: each write is then run again alone, in the order asked, so that every one gets
// exactly the answer it would have had without company.
import postgres, { type ISql, type PendingQuery, type Row, type Sql } from 'postgres';

/** A write of several statements, run in a transaction of its own. */
export type TransactionWrite<T> = (q: ISql) => Promise<T>;

/** A write of one statement (not yet executed: the group sends it), and what its rows mean to the caller. */
export interface StatementWrite<T> {
  statement: (q: ISql) => PendingQuery<Row[]>;
  result: (rows: readonly Row[]) => T;
}

interface Queued {
  write: TransactionWrite<unknown> | StatementWrite<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** Writes grouped into one transaction at most; a bound on how long the first of them waits for the last. */
export const MAX_GROUP = 64;

const isStatement = (w: Queued['write']): w is StatementWrite<unknown> => typeof w !== 'function';

export class WriteGroup {
  private queue: Queued[] = [];
  private committing = false;

  constructor(
    private readonly sql: Sql,
    private readonly maxGroup = MAX_GROUP,
  ) {}

  /** A one-statement write, in the next group; resolves once that group has committed. */
  statement<T>(write: StatementWrite<T>): Promise<T> {
    return this.enqueue(write as StatementWrite<unknown>) as Promise<T>;
  }

  /** A write of several statements, in its own transaction once the writes asked for before it have committed. */
  transaction<T>(write: TransactionWrite<T>): Promise<T> {
    return this.enqueue(write as TransactionWrite<unknown>) as Promise<T>;
  }

  private enqueue(write: Queued['write']): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ write, resolve, reject });
      if (!this.committing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.committing = true;
    try {
      while (this.queue.length > 0) {
        // The one-statement writes at the head of the queue, up to the bound; a transaction write goes alone.
        let n = 0;
        while (n < this.queue.length && n < this.maxGroup && isStatement(this.queue[n]!.write)) n++;
        const group = this.queue.splice(0, Math.max(n, 1));
        if (group.length === 1) await this.alone(group[0]!);
        else await this.together(group);
      }
    } finally {
      this.committing = false;
    }
  }

  /** A write with nothing to share its commit: one statement autocommits, several get their own transaction. */
  private async alone(q: Queued): Promise<void> {
    const w = q.write;
    try {
      q.resolve(isStatement(w) ? w.result(await w.statement(this.sql)) : await this.sql.begin((tx) => w(tx)));
    } catch (err) {
      q.reject(err);
    }
  }

  /** One-statement writes, BEGIN to COMMIT in one go on one connection. */
  private async together(group: Queued[]): Promise<void> {
    let settled: PromiseSettledResult<readonly Row[]>[];
    let committed: PromiseSettledResult<{ command: string }>;
    let conn: postgres.ReservedSql;
    try {
      conn = await this.sql.reserve();
    } catch (err) {
      for (const q of group) q.reject(err);
      return;
    }
    try {
      // execute() sends each at once, in this order; the server answers them in order, each after its own Sync.
      const begin = conn`BEGIN`.execute();
      const answers = group.map((q) => (q.write as StatementWrite<unknown>).statement(conn).execute());
      const commit = conn`COMMIT`.execute();
      [settled, committed] = await Promise.all([Promise.allSettled([begin, ...answers]), Promise.allSettled([commit]).then(([c]) => c!)]);
    } finally {
      conn.release();
    }
    const failure = [...settled, committed].find((s): s is PromiseRejectedResult => s.status === 'rejected');
    // After a refused statement the rest of the group fails too and COMMIT answers ROLLBACK: nothing was written.
    const rolledBack = committed.status === 'fulfilled' && committed.value.command !== 'COMMIT';
    if (failure === undefined && !rolledBack) {
      for (let i = 0; i < group.length; i++) {
        const q = group[i]!;
        try {
          q.resolve((q.write as StatementWrite<unknown>).result((settled[i + 1] as PromiseFulfilledResult<readonly Row[]>).value));
        } catch (err) {
          q.reject(err);
        }
      }
      return;
    }
    if (failure !== undefined && !refusedByServer(failure.reason)) {
      // The connection failed: whether the commit happened is not known, and every write says so.
      for (const q of group) q.reject(failure.reason);
      return;
    }
    for (const q of group) await this.alone(q);
  }
}

/**
 * The server refused a statement and rolled the transaction back (an SQL error, not a lost connection, class 08, or a
 * server shutting down, class 57): running the writes again cannot write anything twice.
 */
function refusedByServer(err: unknown): boolean {
  return err instanceof postgres.PostgresError && !err.code.startsWith('08') && !err.code.startsWith('57');
}
