// tailgate keys: customer keys through /keys. The secret is printed once, on create and rotate (the only answers that
// carry it), with the curl lines that use it; limits are set and cleared through PATCH /keys/:id {limits}.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { clientFor, type ApiClient } from './api-client.js';
import { addListAndShow, addRemove, itemPath, type Resource } from './resource.js';
import { emit, fields, withJson, type Column } from './table.js';
import type { KeyLimits } from '../store/types.js';
import { formatBytes, formatTime, instant, parseQuota, parseRate, positiveNumber, wholeNumber } from './units.js';


interface KeyView {
  id: number;
  name: string | null;
  keyPrefix: string;
  target: { device: number } | { pool: number };
  expiresAt: string | null;
  disabled: boolean;
  limits: KeyLimits;
  quota?: { used: number; limit: number; periodStart: string; resetsAt: string | null; exhausted: boolean };
  createdAt: string;
}

type KeyWithSecret = KeyView & { key: string };

const target = (k: KeyView) => ('device' in k.target ? `device ${k.target.device}` : `pool ${k.target.pool}`);

function state(k: KeyView, now = Date.now()): string {
  if (k.disabled) return 'disabled';
  if (k.expiresAt !== null && Date.parse(k.expiresAt) <= now) return 'expired';
  return 'active';
}

/** "max 10 tunnels, 5/s (burst 10), down 1 MiB/s, up 512 KiB/s, 10 GiB/month"; a dash for none. */
function formatLimits(l: KeyLimits): string {
  const parts: string[] = [];
  if (l.maxTunnels !== undefined) parts.push(`max ${l.maxTunnels} tunnels`);
  if (l.tunnelsPerSecond !== undefined) parts.push(`${l.tunnelsPerSecond}/s${l.tunnelBurst === undefined ? '' : ` (burst ${l.tunnelBurst})`}`);
  if (l.bytesPerSecondDown !== undefined) parts.push(`down ${formatBytes(l.bytesPerSecondDown)}/s`);
  if (l.bytesPerSecondUp !== undefined) parts.push(`up ${formatBytes(l.bytesPerSecondUp)}/s`);
  if (l.quota !== undefined) parts.push(`${formatBytes(l.quota.bytes)}/${l.quota.period}`);
  return parts.length === 0 ? '-' : parts.join(', ');
}

function formatQuotaUse(k: KeyView): string {
  if (k.quota === undefined) return '-';
  return `${formatBytes(k.quota.used)} of ${formatBytes(k.quota.limit)}${k.quota.exhausted ? ' (used up)' : ''}`;
}

const KEY_COLUMNS: Column<KeyView>[] = [
  { header: 'ID', value: (k) => String(k.id), right: true },
  { header: 'NAME', value: (k) => k.name ?? '-' },
  { header: 'PREFIX', value: (k) => k.keyPrefix },
  { header: 'TARGET', value: target },
  { header: 'STATE', value: (k) => state(k) },
  { header: 'EXPIRES', value: (k) => formatTime(k.expiresAt) },
  { header: 'LIMITS', value: (k) => formatLimits(k.limits) },
  { header: 'QUOTA USED', value: formatQuotaUse },
];

function renderKey(k: KeyView): string {
  const rows: [string, string][] = [
    ['id', String(k.id)],
    ['name', k.name ?? '-'],
    ['prefix', k.keyPrefix],
    ['target', target(k)],
    ['state', state(k)],
    ['expires', formatTime(k.expiresAt)],
    ['limits', formatLimits(k.limits)],
  ];
  if (k.quota !== undefined) {
    rows.push(['quota used', `${formatQuotaUse(k)} since ${formatTime(k.quota.periodStart)}${k.quota.resetsAt === null ? '' : `, resets ${formatTime(k.quota.resetsAt)}`}`]);
  }
  rows.push(['created', formatTime(k.createdAt)]);
  return fields(rows);
}

// The limit flags, their API fields, and how their values are read; --clear takes the flag names.
const LIMIT_FLAGS = {
  'max-tunnels': { field: 'maxTunnels', value: '<n>', help: 'open tunnels (and forwarded requests) at once, per gateway', parse: wholeNumber(1, 1_000_000) },
  rate: { field: 'tunnelsPerSecond', value: '<per-second>', help: 'new tunnels per second (fractions allowed), per gateway', parse: positiveNumber },
  burst: { field: 'tunnelBurst', value: '<n>', help: 'how many may start at once after a quiet spell (needs a rate)', parse: wholeNumber(1, 1_000_000) },
  down: { field: 'bytesPerSecondDown', value: '<bytes/s>', help: 'device → client bandwidth over all its tunnels, e.g. 4MiB/s', parse: parseRate },
  up: { field: 'bytesPerSecondUp', value: '<bytes/s>', help: 'client → device bandwidth over all its tunnels, e.g. 1MiB/s', parse: parseRate },
  quota: { field: 'quota', value: '<size/period>', help: 'bytes up + down per day, month (UTC) or in total, e.g. 10GiB/month', parse: parseQuota },
} as const;
type LimitFlag = keyof typeof LIMIT_FLAGS;
const LIMIT_FLAG_NAMES = Object.keys(LIMIT_FLAGS) as LimitFlag[];
const camel = (flag: string) => flag.replace(/-(.)/g, (_, c: string) => c.toUpperCase());

function addLimitOptions(command: Command): Command {
  for (const flag of LIMIT_FLAG_NAMES) {
    const { value, help, parse } = LIMIT_FLAGS[flag];
    command.option(`--${flag} ${value}`, help, parse as (text: string) => unknown);
  }
  return command;
}

/** The limits the flags give, as the API takes them; null for each one --clear names. */
function limitsFrom(options: Record<string, unknown>, clear: readonly string[] = []): Record<string, unknown> {
  const limits: Record<string, unknown> = {};
  for (const flag of LIMIT_FLAG_NAMES) {
    const value = options[camel(flag)];
    if (value !== undefined) limits[LIMIT_FLAGS[flag].field] = value;
  }
  for (const flag of clear) {
    if (flag !== 'all') limits[LIMIT_FLAGS[flag as LimitFlag].field] = null;
  }
  return limits;
}

function clearName(text: string, previous: string[] = []): string[] {
  if (text !== 'all' && !(text in LIMIT_FLAGS)) throw new InvalidArgumentError(`expected one of: ${[...LIMIT_FLAG_NAMES, 'all'].join(', ')}`);
  return [...previous, text];
}

interface ProxyOptions {
  proxyHost?: string;
  httpPort?: number;
  socksPort?: number;
}

/** The gateway's own port variable when this shell has it (the operator's environment is often the gateway's). */
function envPort(name: string, fallback: number): number {
  const n = Number(process.env[name]);
  return Number.isInteger(n) && n > 0 && n < 65536 ? n : fallback;
}

function addProxyOptions(command: Command): Command {
  return command
    .option('--proxy-host <host>', 'the host customers reach the proxies at, for the printed curl lines (default: the API URL\'s host)')
    .option('--http-port <port>', 'the HTTP proxy port for the curl lines (default: $TAILGATE_HTTP_PORT or 8081)', wholeNumber(1, 65535))
    .option('--socks-port <port>', 'the SOCKS5 proxy port for the curl lines (default: $TAILGATE_SOCKS_PORT or 1080)', wholeNumber(1, 65535));
}

/** A word the shell passes as it is, quoted when it holds anything else. */
function shellWord(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The secret, once, and the curl lines that use it through each listener. */
function renderSecret(verb: string, k: KeyWithSecret, api: ApiClient, options: ProxyOptions): string {
  const rawHost = options.proxyHost ?? api.host;
  const host = rawHost.includes(':') && !rawHost.startsWith('[') ? `[${rawHost}]` : rawHost;
  const user = `${encodeURIComponent(k.key)}:${encodeURIComponent(k.key)}`;
  const httpPort = options.httpPort ?? envPort('TAILGATE_HTTP_PORT', 8081);
  const socksPort = options.socksPort ?? envPort('TAILGATE_SOCKS_PORT', 1080);
  return [
    `${verb} key ${k.id}${k.name === null ? '' : ` "${k.name}"`} -> ${target(k)} (prefix ${k.keyPrefix})`,
    `secret (shown this once, only its SHA-256 is stored): ${k.key}`,
    `  curl -x ${shellWord(`http://${user}@${host}:${httpPort}`)} https://example.com`,
    `  curl --socks5 ${shellWord(`${user}@${host}:${socksPort}`)} https://example.com`,
    '',
  ].join('\n');
}

const KEYS: Resource<KeyView, KeyView> = { noun: 'key', path: '/keys', columns: KEY_COLUMNS, render: renderKey };

export function addKeysCommand(program: Command): void {
  const keys = program
    .command('keys')
    .description('list, create, rotate, limit and delete customer keys (ls when no subcommand is given)');

  addListAndShow(keys, KEYS, { ls: 'every key: prefix, target, state, expiry, limits, quota used (never a secret)', show: 'one key (never its secret)' });

  withJson(
    addProxyOptions(
      addLimitOptions(
        keys
          .command('create')
          .description('create a key for a device or a pool; prints its secret once, with curl lines for both proxies')
          .addOption(new Option('--device <id>', 'egress through this device').argParser(wholeNumber(1, 2 ** 31 - 1)).conflicts('pool'))
          .addOption(new Option('--pool <id>', "egress through this pool's devices").argParser(wholeNumber(1, 2 ** 31 - 1)))
          .option('--name <name>', 'a name for people and metrics')
          .option('--expires <when>', 'when it stops working: a duration from now (30d, 12h) or an ISO time', instant('ahead')),
      ),
    ),
  ).action(async (options: Record<string, unknown> & ProxyOptions, command: Command) => {
    if (options.device === undefined && options.pool === undefined) command.error('error: give --device <id> or --pool <id>');
    const api = clientFor(command);
    const limits = limitsFrom(options);
    const body = {
      ...(options.device === undefined ? {} : { device: options.device }),
      ...(options.pool === undefined ? {} : { pool: options.pool }),
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.expires === undefined ? {} : { expiresAt: options.expires }),
      ...(Object.keys(limits).length === 0 ? {} : { limits }),
    };
    emit(command, await api.call<KeyWithSecret>('POST', '/keys', body), (k) => renderSecret('created', k, api, options));
  });

  withJson(
    keys
      .command('edit')
      .description("change a key's name, target or expiry, or switch it off (cuts its open tunnels) and on")
      .argument('<id>', 'key id')
      .option('--name <name>', 'a new name')
      .addOption(new Option('--device <id>', 'egress through this device from the next connection on').argParser(wholeNumber(1, 2 ** 31 - 1)).conflicts('pool'))
      .addOption(new Option('--pool <id>', "egress through this pool's devices from the next connection on").argParser(wholeNumber(1, 2 ** 31 - 1)))
      .option('--expires <when>', 'a duration from now (30d), an ISO time, or "never"', (text: string) => (text === 'never' ? 'never' : instant('ahead')(text)))
      .addOption(new Option('--enable', 'let it carry traffic again').conflicts('disable'))
      .addOption(new Option('--disable', 'refuse it and cut its open tunnels')),
  ).action(async (id: string, options: { name?: string; device?: number; pool?: number; expires?: string; enable?: boolean; disable?: boolean }, command: Command) => {
    const patch: Record<string, unknown> = {};
    if (options.name !== undefined) patch.name = options.name;
    if (options.device !== undefined) patch.device = options.device;
    if (options.pool !== undefined) patch.pool = options.pool;
    if (options.expires !== undefined) patch.expiresAt = options.expires === 'never' ? null : options.expires;
    if (options.enable || options.disable) patch.disabled = options.disable === true;
    if (Object.keys(patch).length === 0) command.error('error: nothing to change: give --name, --device, --pool, --expires, --enable or --disable');
    emit(command, await clientFor(command).call<KeyView>('PATCH', itemPath(KEYS, id), patch), renderKey);
  });

  withJson(
    addProxyOptions(
      keys
        .command('rotate')
        .description('a new secret for a key, printed once; the old one is refused from the next connection on')
        .argument('<id>', 'key id'),
    ),
  ).action(async (id: string, options: ProxyOptions, command: Command) => {
    const api = clientFor(command);
    emit(command, await api.call<KeyWithSecret>('POST', `${itemPath(KEYS, id)}/rotate`), (k) => renderSecret('rotated', k, api, options));
  });

  addRemove(keys, KEYS, 'delete a key: refused at once, its open tunnels cut');

  withJson(
    addLimitOptions(
      keys
        .command('limits')
        .description("show a key's limits, or set and clear them (a limit not named stays as it is)")
        .argument('<id>', 'key id'),
    ).option('--clear <limit>', `remove a limit (repeatable): ${LIMIT_FLAG_NAMES.join(', ')}, or all`, clearName),
  ).action(async (id: string, options: Record<string, unknown> & { clear?: string[] }, command: Command) => {
    const api = clientFor(command);
    const clear = options.clear ?? [];
    const limits = limitsFrom(options, clear);
    const both = LIMIT_FLAG_NAMES.filter((flag) => options[camel(flag)] !== undefined && clear.includes(flag));
    if (both.length > 0) command.error(`error: --${both[0]} is both set and cleared`);
    let answer: KeyView;
    if (clear.includes('all')) {
      // All of them go first; limits given beside "all" are then set on the empty set.
      answer = await api.call<KeyView>('PATCH', itemPath(KEYS, id), { limits: null });
      if (Object.keys(limits).length > 0) answer = await api.call<KeyView>('PATCH', itemPath(KEYS, id), { limits });
    } else if (Object.keys(limits).length > 0) {
      answer = await api.call<KeyView>('PATCH', itemPath(KEYS, id), { limits });
    } else {
      answer = await api.get<KeyView>(itemPath(KEYS, id));
    }
    emit(command, answer, renderKey);
  });
}
