// Usage accounting as the database has it (every gateway's flushed buckets): series per key or device, totals per key
// or device. Ids are not checked against the registry: usage of deleted keys and devices stays, for billing.
import type { FastifyPluginAsync } from 'fastify';
import type { UsageCounts, UsageStep, UsageStore } from '../store/types.js';
import { ApiError } from './errors.js';
import { parseId } from './params.js';
import {
  AUTH_ERRORS,
  DEVICE_ID_PARAMS,
  KEY_ID_PARAMS,
  USAGE_BYTES_SERIES_QUERY,
  USAGE_SERIES_QUERY,
  USAGE_TOTALS_QUERY,
  errorResponses,
  type IdParams,
  type UsageBytesSeriesQuery,
  type UsageSeriesQuery,
  type UsageTotalsQuery,
} from './schemas.js';

export interface UsageOptions {
  store: Pick<UsageStore, 'usageSeries' | 'usageTotals' | 'usageBytesSeries'>;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const STEP_MS: Record<UsageStep, number> = { hour: HOUR_MS, day: DAY_MS };
/** Most steps a series answers with (a year of hours is 8,784). */
export const MAX_USAGE_STEPS = 10_000;
/** Most steps of /usage/series: its answer holds steps × (keys or devices) numbers (a month of hours is 744). */
export const MAX_BYTES_SERIES_STEPS = 1_000;

function zero(): UsageCounts {
  return { bytesUp: 0, bytesDown: 0, tunnels: 0, refused: 0, failures: 0 };
}

function add(into: UsageCounts, c: UsageCounts): void {
  into.bytesUp += c.bytesUp;
  into.bytesDown += c.bytesDown;
  into.tunnels += c.tunnels;
  into.refused += c.refused;
  into.failures += c.failures;
}

/** from and to as asked or by default, `from` rounded down to `unit` (hours and days both start on UTC boundaries). */
function range(query: { from?: string; to?: string }, unit: number, defaultFrom: (to: number) => number): { from: number; to: number } {
  const to = query.to === undefined ? Date.now() : Date.parse(query.to);
  let from = query.from === undefined ? defaultFrom(to) : Date.parse(query.from);
  from -= ((from % unit) + unit) % unit;
  if (from >= to) throw new ApiError(400, 'invalid_request', 'querystring.from must be before querystring.to');
  return { from, to };
}

/** A series' step, its length and its range, refused when it holds more than `maxSteps` steps. */
function stepRange(query: { from?: string; to?: string; step?: UsageStep }, maxSteps: number) {
  const step: UsageStep = query.step ?? 'hour';
  const unit = STEP_MS[step];
  const { from, to } = range(query, unit, (t) => t - (step === 'hour' ? DAY_MS : 30 * DAY_MS));
  const steps = Math.ceil((to - from) / unit);
  if (steps > maxSteps) {
    throw new ApiError(400, 'invalid_request', `querystring.from: the range holds ${steps} steps, more than ${maxSteps}; narrow it or use step=day`);
  }
  return { step, unit, from, to, steps };
}

export const usage: FastifyPluginAsync<UsageOptions> = async (app, { store }) => {
  for (const subject of ['key', 'device'] as const) {
    app.get<{ Params: IdParams; Querystring: UsageSeriesQuery }>(
      `/${subject}s/:id/usage`,
      {
        config: { access: 'admin' },
        schema: {
          summary: `The ${subject}'s usage over time, in hourly or daily steps (what every gateway has written; each writes every TAILGATE_USAGE_FLUSH_MS)`,
          params: subject === 'key' ? KEY_ID_PARAMS : DEVICE_ID_PARAMS,
          querystring: USAGE_SERIES_QUERY,
          response: { 200: { description: 'The series and its total', $ref: 'UsageSeries#' }, ...errorResponses(400, ...AUTH_ERRORS, 503) },
        },
      },
      async (request) => {
        const id = parseId(request.params.id);
        const { step, unit, from, to } = stepRange(request.query, MAX_USAGE_STEPS);
        const points = new Map((await store.usageSeries(subject, id, new Date(from), new Date(to), step)).map((p) => [p.t.getTime(), p]));
        const total = zero();
        const series: (UsageCounts & { t: string })[] = [];
        for (let t = from; t < to; t += unit) {
          const counts = points.get(t) ?? zero();
          add(total, counts);
          series.push({ t: new Date(t).toISOString(), bytesUp: counts.bytesUp, bytesDown: counts.bytesDown, tunnels: counts.tunnels, refused: counts.refused, failures: counts.failures });
        }
        return { from: new Date(from).toISOString(), to: new Date(to).toISOString(), step, series, total };
      },
    );
  }

  app.get<{ Querystring: UsageBytesSeriesQuery }>(
    '/usage/series',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Bytes (up + down) per step of every key or every device at once, for sparklines: one query whatever their number',
        querystring: USAGE_BYTES_SERIES_QUERY,
        response: { 200: { description: 'One series per key or device', $ref: 'UsageBytesSeries#' }, ...errorResponses(400, ...AUTH_ERRORS, 503) },
      },
    },
    async (request) => {
      const by = request.query.by ?? 'device';
      const { step, unit, from, to, steps } = stepRange(request.query, MAX_BYTES_SERIES_STEPS);
      const rows = await store.usageBytesSeries(by, new Date(from), new Date(to), step);
      const series = rows.map((r) => {
        const bytes = new Array<number>(steps).fill(0);
        for (const s of r.steps) bytes[Math.floor((s.t - from) / unit)] = s.bytes;
        return { id: r.id, name: r.name, bytes };
      });
      return { from: new Date(from).toISOString(), to: new Date(to).toISOString(), step, by, series };
    },
  );

  app.get<{ Querystring: UsageTotalsQuery }>(
    '/usage',
    {
      config: { access: 'admin' },
      schema: {
        summary: 'Usage totals per key or per device over a range, most bytes first',
        querystring: USAGE_TOTALS_QUERY,
        response: { 200: { description: 'The totals', $ref: 'UsageTotals#' }, ...errorResponses(400, ...AUTH_ERRORS, 503) },
      },
    },
    async (request) => {
      const by = request.query.by ?? 'key';
      const { from, to } = range(request.query, HOUR_MS, (t) => {
        const d = new Date(t);
        return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
      });
      const totals = await store.usageTotals(by, new Date(from), new Date(to));
      return { from: new Date(from).toISOString(), to: new Date(to).toISOString(), by, usage: totals };
    },
  );
};
