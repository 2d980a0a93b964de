// The `tailgate` command line: the gateway (serve), the operator's commands against its management API, and
// import-legacy. Exit codes: 0 done, 1 the API (or a database) refused or could not be reached, 2 a usage or configuration error.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { CliError, DEFAULT_API_URL } from './api-client.js';
import { addDevicesCommand } from './devices.js';
import { addEnrollCommand } from './enroll.js';
import { addImportLegacyCommand } from './import-legacy.js';
import { addKeysCommand } from './keys.js';
import { addPoolsCommand } from './pools.js';
import { addServeCommand } from './serve.js';
import { positiveNumber } from './units.js';
import { addUsageCommand } from './usage.js';

// src/cli/ and dist/cli/ are both two levels below the package root.
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export function buildProgram(): Command {
  const program = new Command('tailgate')
    .description('Proxy gateway for a Headscale tailnet: run it (serve) and manage its devices, keys, pools and usage.')
    .version(VERSION)
    .option('--api-url <url>', `the management API (default: $TAILGATE_API_URL, else ${DEFAULT_API_URL})`)
    .option('--timeout <seconds>', 'how long one API call may take', positiveNumber, 10)
    // Set before the commands are added: each inherits them (errors thrown, not exited on; help after an error).
    .exitOverride()
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true, styleTitle: (title) => title.toLowerCase() })
    .addHelpText(
      'after',
      '\nenvironment:\n' +
        '  TAILGATE_API_URL      the management API the commands call (default http://127.0.0.1:9091)\n' +
        '  TAILGATE_ADMIN_TOKEN  sent as Authorization: Bearer; needed when the gateway has one configured\n' +
        '\nTables by default, --json for the API\'s answer; exit 0 done, 1 the API refused (its message on stderr), 2 usage error.',
    );
  addServeCommand(program);
  addDevicesCommand(program);
  addKeysCommand(program);
  addPoolsCommand(program);
  addUsageCommand(program);
  addEnrollCommand(program);
  addImportLegacyCommand(program);
  return program;
}

/** Runs one command line; resolves with the exit code (serve resolves once listening and keeps the process alive). */
export async function run(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    // commander has already printed its message (and the command's help); help and --version end with code 0.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CliError) {
      process.stderr.write(`tailgate: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}
