// tailgate usage: what keys and devices moved, from usage accounting (/usage, /keys/:id/usage, /devices/:id/usage). The
// API answers what the database holds, so up to one TAILGATE_USAGE_FLUSH_MS behind.
import { Option, type Command } from 'commander';
import { clientFor } from './api-client.js';
import { emit, table, withJson, type Column } from './table.js';
import { formatBytes, formatTime, instant } from './units.js';

interface Counts {
  bytesUp: number;
  bytesDown: number;
  tunnels: number;
  refused: number;
  failures: number;
}

interface UsageTotals {
  from: string;
  to: string;
  by: 'key' | 'device';
  usage: (Counts & { id: number; name: string | null })[];
}

interface UsageSeries {
  from: string;
  to: string;
  step: 'hour' | 'day';
  series: (Counts & { t: string })[];
  total: Counts;
}

const COUNT_COLUMNS: Column<Counts>[] = [
  { header: 'UP', value: (c) => formatBytes(c.bytesUp), right: true },
  { header: 'DOWN', value: (c) => formatBytes(c.bytesDown), right: true },
  { header: 'TOTAL', value: (c) => formatBytes(c.bytesUp + c.bytesDown), right: true },
  { header: 'TUNNELS', value: (c) => String(c.tunnels), right: true },
  { header: 'REFUSED', value: (c) => String(c.refused), right: true },
  { header: 'FAILURES', value: (c) => String(c.failures), right: true },
];

interface RangeOptions {
  since?: string;
  until?: string;
}

function addRangeOptions(command: Command, since: string): Command {
  return command
    .option('--since <when>', `start: a duration back from now (24h, 7d), or an ISO time (default: ${since})`, instant('ago'))
    .option('--until <when>', 'end, exclusive: a duration back from now, or an ISO time (default: now)', instant('ago'));
}

function query(params: Record<string, string | undefined>): string {
  const given = Object.entries(params).filter((entry): entry is [string, string] => entry[1] !== undefined);
  return given.length === 0 ? '' : `?${new URLSearchParams(given).toString()}`;
}

function renderTotals(u: UsageTotals): string {
  const columns: Column<UsageTotals['usage'][number]>[] = [
    { header: u.by === 'key' ? 'KEY' : 'DEVICE', value: (r) => String(r.id), right: true },
    { header: 'NAME', value: (r) => r.name ?? '-' },
    ...COUNT_COLUMNS,
  ];
  return `usage by ${u.by} from ${formatTime(u.from)} to ${formatTime(u.to)}\n${table(u.usage, columns)}`;
}

function renderSeries(what: string, u: UsageSeries): string {
  const columns: Column<UsageSeries['series'][number] | (Counts & { t: null })>[] = [
    { header: u.step === 'hour' ? 'HOUR' : 'DAY', value: (r) => (r.t === null ? 'total' : u.step === 'hour' ? formatTime(r.t) : r.t.slice(0, 10)) },
    ...COUNT_COLUMNS,
  ];
  return `usage of ${what} by ${u.step} from ${formatTime(u.from)} to ${formatTime(u.to)}\n${table([...u.series, { ...u.total, t: null }], columns)}`;
}

export function addUsageCommand(program: Command): void {
  // The totals are a subcommand of their own (the default one), so that no option of theirs is also an option of the
  // parent that `usage key <id> --since …` would then hand to the parent.
  const usage = program
    .command('usage')
    .description('bytes, tunnels, refusals and failures per key or per device (totals when no subcommand is given)');

  withJson(
    addRangeOptions(
      usage
        .command('totals', { isDefault: true })
        .description('totals per key or per device over a range, most bytes first')
        .addOption(new Option('--by <what>', 'totals per key or per device').choices(['key', 'device']).default('key')),
      'the start of this month, UTC',
    ),
  ).action(async (options: RangeOptions & { by: string }, command: Command) => {
    const answer = await clientFor(command).get<UsageTotals>(`/usage${query({ by: options.by, from: options.since, to: options.until })}`);
    emit(command, answer, renderTotals);
  });

  for (const subject of ['key', 'device'] as const) {
    withJson(
      addRangeOptions(
        usage
          .command(subject)
          .description(`one ${subject}'s usage over time, every step listed (empty ones as zeros), with the total`)
          .argument('<id>', `${subject} id`)
          .addOption(new Option('--step <step>', 'one row per hour or per UTC day').choices(['hour', 'day']).default('hour')),
        '24 hours back with --step hour, 30 days with day',
      ),
    ).action(async (id: string, options: RangeOptions & { step: string }, command: Command) => {
      const path = `/${subject}s/${encodeURIComponent(id)}/usage${query({ step: options.step, from: options.since, to: options.until })}`;
      emit(command, await clientFor(command).get<UsageSeries>(path), (u) => renderSeries(`${subject} ${id}`, u));
    });
  }
}
