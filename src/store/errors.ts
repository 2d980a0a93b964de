// What the store tells its callers when it refuses a change, in its own terms: the SQL error stays the cause.
export type StoreErrorKind = 'not-found' | 'conflict' | 'foreign-key' | 'invalid';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly kind: StoreErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface PostgresErrorLike {
  code?: string;
  message: string;
}

/**
 * The SQL error a refused write raised, as a StoreError; anything else (the database unreachable, a bug) is
 * returned unchanged. The message is PostgreSQL's, which names the constraint and never a key (only hashes are stored).
 */
export function toStoreError(err: unknown): unknown {
  const e = err as PostgresErrorLike;
  if (e === null || typeof e !== 'object' || typeof e.code !== 'string') return err;
  switch (e.code) {
    case '23505': // unique_violation
      return new StoreError('conflict', e.message, { cause: err });
    case '23503': // foreign_key_violation
      return new StoreError('foreign-key', e.message, { cause: err });
    case '23514': // check_violation
    case '23502': // not_null_violation
    case '22P02': // invalid_text_representation
    case '22003': // numeric_value_out_of_range
      return new StoreError('invalid', e.message, { cause: err });
    default:
      return err;
  }
}
