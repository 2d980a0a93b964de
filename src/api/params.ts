import { ApiError } from './errors.js';

/** The largest id a row can have (PostgreSQL's integer). */
const MAX_ROW_ID = 2_147_483_647;

/** An `:id` path parameter, already matched as digits by the route's schema. */
export function parseId(raw: string): number {
  const id = Number(raw);
  if (id > MAX_ROW_ID) throw new ApiError(400, 'invalid_request', `params.id must be at most ${MAX_ROW_ID}`);
  return id;
}

/** `?purge=true` or `?purge=1`. */
export function wantsPurge(query: { purge?: string }): boolean {
  return query.purge === 'true' || query.purge === '1';
}

/** The record a GET by id read, or the 404 naming what was not there. */
export function found<T>(record: T | null, what: string, id: number): T {
  if (record === null) throw new ApiError(404, 'not_found', `id: no ${what} ${id}`);
  return record;
}
