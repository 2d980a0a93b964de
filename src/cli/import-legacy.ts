// tailgate import-legacy: brings the original Go service's key bindings into tailgate's store. It runs beside the
// gateway with the same configuration (environment) and works on the databases directly, not through the API.
import type { Command } from 'commander';
import { destination, pino } from 'pino';
import postgres from 'postgres';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { AddressAllowList } from '../core/cidr.js';
import { formatIPv6, ipFamily, writeIPv6 } from '../core/ip.js';
import { hashKey, keyTag } from '../core/key.js';
import type { Logger } from '../log.js';
import { clientConnectionOptions, describeDatabaseUrl, parseDatabaseUrl } from '../store/database-url.js';
import { openStore } from '../store/index.js';
import { CliError } from './api-client.js';

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

export function addImportLegacyCommand(program: Command): void {
  program
    .command('import-legacy')
    .description("import the original Go service's key bindings into this gateway's store (run beside the gateway, same environment)")
    .argument('<postgres URL>', 'the original database, holding register_key_ip_map(reg_key, ip_address)')
    .usage('<postgres URL>')
    .addHelpText(
      'after',
      '\nCreates a device and a key for every row, in the store DATABASE_URL (or the embedded database under TAILGATE_DATA_DIR,\n' +
        'not in use by a running gateway) selects; port and protocol are TAILGATE_DEVICE_PORT and TAILGATE_DEVICE_PROTOCOL.\n' +
        'Keys already in the store are left as they are, so it can run again. Talks to the databases, not to the API.',
    )
    .action(async (sourceUrl: string) => {
      let config: Config;
      try {
        config = loadConfig(process.env);
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(err.message, 2);
        throw err;
      }
      // Diagnostics (the migrations the store applies, say) to stderr, so stdout is only the summary.
      const log = pino({ level: config.logLevel, base: undefined }, destination(2));
      let summary: Summary;
      try {
        summary = await importLegacy(sourceUrl, config, process.env, log);
      } catch (err) {
        throw new CliError(`import-legacy: ${(err as Error).message}`);
      }
      process.stdout.write(report(sourceUrl, process.env, summary));
    });
}
