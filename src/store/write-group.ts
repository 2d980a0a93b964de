// Group commit for registry writes. Every key write notifies (the change triggers of migrations 2 and 3), and
// PostgreSQL serialises the commits of notifying transactions across the whole server: each one holds a lock from its
// commit until its WAL record is flushed, so key writes committed one by one queue there one flush each, behind every
// other notifying writer on the server too. Writes asked for while a group is committing wait and go out together in
// the next group: one transaction, one flush, one turn at that lock for all of them, their statements sent without
// waiting for each other's answers (one-statement writes) on one connection. A write asked for when nothing is in
// flight starts at once: grouping adds no wait, it only gathers what arrives while the database is busy anyway.
//
// Should any write of a group be refused (a key in use, an unknown device), or the commit (a deadlock with another
// gateway's writes), the server has rolled the whole group back and nothing of it was written: each write is then run
// again alone, in the order asked, so that every one gets exactly the answer it would have had without company.
import postgres, { type ISql, type Sql } from 'postgres';

/**
 * One write: its statements, run on the group's transaction, or, for a write of one statement with no company, on the
 * client itself (autocommit: one round trip rather than three).
 */
export type GroupedWrite<T> = (q: ISql) => Promise<T>;

interface Queued {
  write: GroupedWrite<unknown>;
  oneStatement: boolean;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** Writes grouped into one transaction at most; a bound on how long the first of them waits for the last. */
export const MAX_GROUP = 64;

export class WriteGroup {
  private queue: Queued[] = [];
  private committing = false;

  constructor(
    private readonly sql: Sql,
    private readonly maxGroup = MAX_GROUP,
  ) {}

  /**
   * Runs the write in the next group and resolves once that group has committed. `oneStatement`: the write is a
   * single statement, so it is atomic without a transaction of its own and may be sent without waiting for the
   * answers to the writes before it.
   */
  run<T>(write: GroupedWrite<T>, oneStatement = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ write: write as GroupedWrite<unknown>, oneStatement, resolve: resolve as (value: unknown) => void, reject });
      if (!this.committing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.committing = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.length <= this.maxGroup ? this.queue : this.queue.slice(0, this.maxGroup);
        this.queue = group === this.queue ? [] : this.queue.slice(this.maxGroup);
        if (group.length === 1) await this.alone(group[0]!);
        else await this.together(group);
      }
    } finally {
      this.committing = false;
    }
  }

  /** A write with nothing to share its commit: its own transaction (or none, for one statement). */
  private async alone(q: Queued): Promise<void> {
    try {
      q.resolve(await (q.oneStatement ? q.write(this.sql) : this.sql.begin((tx) => q.write(tx))));
    } catch (err) {
      q.reject(err);
    }
  }

  private async together(group: Queued[]): Promise<void> {
    let values: unknown[];
    try {
      values = await this.sql.begin(async (tx) => {
        const answers: Promise<unknown>[] = [];
        for (const q of group) {
          // A write of several statements reads what it then writes: it starts once the writes before it have
          // answered, and the next starts once it has, so no two interleave.
          if (!q.oneStatement) await Promise.all(answers);
          const answer = q.write(tx);
          answers.push(answer);
          if (!q.oneStatement) await answer;
        }
        return Promise.all(answers);
      });
    } catch (err) {
      if (!refusedByServer(err)) {
        // The connection failed: whether the commit happened is not known, and every write says so.
        for (const q of group) q.reject(err);
        return;
      }
      for (const q of group) await this.alone(q);
      return;
    }
    for (let i = 0; i < group.length; i++) group[i]!.resolve(values[i]);
  }
}

/**
 * The server refused the transaction and rolled it back (an SQL error, not a lost connection, class 08, or a server
 * shutting down, class 57), or a write refused it itself: running its writes again cannot write anything twice.
 */
function refusedByServer(err: unknown): boolean {
  if (!(err instanceof postgres.PostgresError)) return !isConnectionError(err);
  return !err.code.startsWith('08') && !err.code.startsWith('57');
}

/** The client's own errors for a connection that went away (`postgres` gives these codes, not SQLSTATEs). */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('CONNECT') || code.startsWith('E'));
}
