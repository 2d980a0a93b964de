// tailgate serve: the gateway itself (what `npm start` and the image run). On a terminal it logs readable coloured
// lines and then says where everything is; piped, in a container or with TAILGATE_LOG_FORMAT=json it keeps JSON lines,
// one per event, for log collectors.
import type { Command } from 'commander';
import type { Gateway } from '../app.js';
import type { Config } from '../config.js';
import { createLogger } from '../log.js';
import { serve } from '../main.js';

/** 0.0.0.0 and :: are where the gateway listens, not an address anyone can call; loopback is, from this machine. */
function reachable(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * The three lines a newcomer needs: the proxies, the API, and the curl that registers a first device. Placeholders
 * only: the admin token is named, never printed.
 */
export function newcomerLines(config: Config, ports: Gateway['ports']): string {
  const proxyHost = reachable(config.listenHost);
  const api = `${config.tls?.api ? 'https' : 'http'}://${reachable(config.apiHost)}:${ports.api}`;
  const proxies = [
    ...(ports.http !== 0 ? [`HTTP http://${proxyHost}:${ports.http}`, `SOCKS5 socks5://${proxyHost}:${ports.socks}`] : []),
    ...(ports.https !== undefined ? [`HTTPS https://${proxyHost}:${ports.https}`, `SOCKS5 over TLS ${proxyHost}:${ports.socksTls}`] : []),
  ];
  const wildcard = config.listenHost === '0.0.0.0' || config.listenHost === '::' ? ` (listening on all interfaces)` : '';
  const auth = config.adminToken === undefined ? '' : `-H "Authorization: Bearer $TAILGATE_ADMIN_TOKEN" `;
  // Without Headscale a key is bound to a device by its tailnet address; with it, the key `tailscale up` printed is enough.
  const body = config.headscale === undefined ? `{"key":"<new proxy key>","ip":"<device tailnet IP>"}` : `{"key":"<key from tailscale up>"}`;
  return [
    `proxies: ${proxies.join('  ')}${wildcard}`,
    `management API: ${api} (OpenAPI at ${api}/openapi.json; tailgate --help for the command line)`,
    `first device: curl ${auth}-d '${body}' ${api}/register`,
    '',
  ].join('\n');
}

export function addServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the gateway: HTTP and SOCKS5 proxies and the management API, configured by the environment (README "Configuration")')
    .addHelpText(
      'after',
      '\nLogs: readable coloured lines when stdout is a terminal, JSON lines otherwise; TAILGATE_LOG_FORMAT=json|pretty|auto\n' +
        'overrides, NO_COLOR turns colour off. SIGTERM or SIGINT drains open tunnels and exits 0.',
    )
    .action(async () => {
      let pretty = false;
      await serve({
        logger: (config) => {
          pretty = config.logFormat === 'pretty' || (config.logFormat === 'auto' && process.stdout.isTTY === true);
          return createLogger(config.logLevel, { pretty, colour: pretty && !process.env.NO_COLOR });
        },
        // The lines are for a person at a terminal; a JSON log stream stays JSON only.
        onListening: (gateway) => {
          if (pretty) process.stdout.write(newcomerLines(gateway.config, gateway.ports));
        },
      });
    });
}
