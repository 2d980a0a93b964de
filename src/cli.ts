#!/usr/bin/env node
// `tailgate <command>`: operator commands run beside the gateway, against the same configuration (environment).
// The only one for now: import-legacy, which brings the original Go service's key bindings into tailgate's store.
import { destination, pino } from 'pino';
import postgres from 'postgres';
import { ConfigError, loadConfig, type Config } from './config.js';
import { AddressAllowList } from './core/cidr.js';
import { formatIPv6, ipFamily, writeIPv6 } from './core/ip.js';
import { hashKey, keyTag } from './core/key.js';
import type { Logger } from './log.js';
import { clientConnectionOptions, describeDatabaseUrl, parseDatabaseUrl } from './store/database-url.js';
import { openStore } from './store/index.js';

const USAGE = `usage: tailgate import-legacy <postgres URL>

  import-legacy   Creates a device and a key for every row of the original service's table
                  register_key_ip_map(reg_key, ip_address) at the URL, in the store DATABASE_URL (or the embedded
                  database under TAILGATE_DATA_DIR) selects; port and protocol are TAILGATE_DEVICE_PORT and
                  TAILGATE_DEVICE_PROTOCOL. Keys already in the store are left as they are, so it can run again.
`;

// The rule the management API applies to keys (src/api/schemas.ts): 8 to 256 printable ASCII characters, no ':'
// (the proxies read user:password).
const KEY_RULE = /^[!-9;-~]{8,256}$/;

interface LegacyRow {
  reg_key: string | null;
  ip_address: string | null;
}

interface Summary {
  rows: number;
  created: number;
  existing: number;
  skipped: { row: number; keyTag: string | null; reason: string }[];
}

/** The address as the binding service stores it: IPv4 as is, IPv6 compressed (RFC 5952); an inet's host prefix dropped. */
function deviceAddress(text: string): string | null {
  const bare = text.trim().replace(/\/(32|128)$/, '');
  const family = ipFamily(bare);
  if (family === 4) return bare;
  // A zone means nothing on the tailnet.
  if (family !== 6 || bare.includes('%')) return null;
  const bytes = new Uint8Array(16);
  writeIPv6(bare, bytes, 0);
  return formatIPv6(bytes, 0);
}

async function importLegacy(sourceUrl: string, config: Config, env: NodeJS.ProcessEnv, log: Logger): Promise<Summary> {
  const source = parseDatabaseUrl(sourceUrl, env);
  const where = describeDatabaseUrl(source);
  const client = postgres({ ...clientConnectionOptions(source), max: 1, connect_timeout: 10, onnotice: () => {} });
  let rows: LegacyRow[];
  try {
    // ::text: the original schema's column types are not ours to assume (ip_address may be inet).
    rows = [...(await client<LegacyRow[]>`SELECT reg_key::text AS reg_key, ip_address::text AS ip_address FROM register_key_ip_map`)];
  } catch (err) {
    throw new Error(`reading register_key_ip_map from ${where}: ${(err as Error).message}`, { cause: err });
  } finally {
    await client.end({ timeout: 5 });
  }

  const allowList = new AddressAllowList(config.allowCidrs);
  const store = await openStore({ database: config.database, dataDir: config.dataDir, log });
  const summary: Summary = { rows: rows.length, created: 0, existing: 0, skipped: [] };
  try {
    for (const [index, row] of rows.entries()) {
      const number = index + 1;
      if (row.reg_key === null || !KEY_RULE.test(row.reg_key)) {
        summary.skipped.push({ row: number, keyTag: null, reason: 'reg_key is not a valid key (8 to 256 printable ASCII characters, no ":")' });
        continue;
      }
      const keyHash = hashKey(row.reg_key);
      if ((await store.resolveKey(keyHash)) !== null) {
        summary.existing++;
        continue;
      }
      const ip = row.ip_address === null ? null : deviceAddress(row.ip_address);
      if (ip === null) {
        summary.skipped.push({ row: number, keyTag: keyTag(keyHash), reason: `ip_address ${JSON.stringify(row.ip_address)} is not an IP address` });
        continue;
      }
      if (!allowList.allows(ip)) {
        summary.skipped.push({ row: number, keyTag: keyTag(keyHash), reason: `ip_address ${ip} is outside TAILGATE_ALLOW_CIDRS (${allowList.toString()})` });
        continue;
      }
      const { created } = await store.upsert({ keyHash, ip, port: config.deviceDefaults.port, protocol: config.deviceDefaults.protocol });
      if (created) summary.created++;
      else summary.existing++;
    }
  } finally {
    await store.close();
  }
  return summary;
}

function report(sourceUrl: string, env: NodeJS.ProcessEnv, s: Summary): string {
  const lines = [
    `import-legacy from ${describeDatabaseUrl(parseDatabaseUrl(sourceUrl, env))}: ${s.rows} rows`,
    `  created:         ${s.created}`,
    `  already present: ${s.existing}`,
    `  skipped:         ${s.skipped.length}`,
  ];
  for (const skip of s.skipped) lines.push(`    row ${skip.row}${skip.keyTag === null ? '' : ` (key ${skip.keyTag})`}: ${skip.reason}`);
  return `${lines.join('\n')}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command !== 'import-legacy' || args.length !== 1) {
    process.stderr.write(USAGE);
    return 2;
  }
  const [sourceUrl] = args as [string];
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tailgate: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Diagnostics (the migrations the store applies, say) to stderr, so stdout is only the summary.
  const log = pino({ level: config.logLevel, base: undefined }, destination(2));
  try {
    const summary = await importLegacy(sourceUrl, config, process.env, log);
    process.stdout.write(report(sourceUrl, process.env, summary));
    return 0;
  } catch (err) {
    process.stderr.write(`tailgate import-legacy: ${(err as Error).message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
