// The configuration the whole-gateway tests share: every listener on a loopback port the system picks, devices
// allowed anywhere on 127.0.0.0/8, the admin token given; `env` adds to it or overrides it.
import { loadConfig, type Config } from '../../src/config.js';

export function loopbackEnv(token: string): Record<string, string> {
  return {
    TAILGATE_LISTEN_HOST: '127.0.0.1',
    TAILGATE_HTTP_PORT: '0',
    TAILGATE_SOCKS_PORT: '0',
    TAILGATE_API_PORT: '0',
    TAILGATE_ADMIN_TOKEN: token,
    TAILGATE_ALLOW_CIDRS: '127.0.0.0/8',
  };
}

export function loopbackConfig(token: string, env: Record<string, string> = {}): Config {
  return loadConfig({ ...loopbackEnv(token), ...env });
}
