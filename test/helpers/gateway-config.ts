// The configuration the whole-gateway tests share: every listener on a loopback port the system picks, devices
// allowed anywhere on 127.0.0.0/8, the admin token given; `env` adds to it or overrides it. The brute-force throttle
// is off: every test client comes from 127.0.0.1, so refusals other tests provoke on purpose would add up across
// tests into a throttled address; auth-throttle.e2e.test.ts turns it on.
import { loadConfig, type Config } from '../../src/config.js';

/** The environment behind loopbackConfig, for a gateway run as a child process. */
export function loopbackEnv(token: string): Record<string, string> {
  return {
    TAILGATE_LISTEN_HOST: '127.0.0.1',
    TAILGATE_HTTP_PORT: '0',
    TAILGATE_SOCKS_PORT: '0',
    TAILGATE_API_PORT: '0',
    TAILGATE_ADMIN_TOKEN: token,
    TAILGATE_ALLOW_CIDRS: '127.0.0.0/8',
    TAILGATE_AUTH_FAILURES_PER_MINUTE: '0',
    // One process, as the tests were written for (test/workers.e2e.test.ts sets more).
    TAILGATE_WORKERS: '1',
  };
}

export function loopbackConfig(token: string, env: Record<string, string> = {}): Config {
  return loadConfig({ ...loopbackEnv(token), ...env });
}
