// tailgate enroll: POST /register for a device. Given what `tailscale up --login-server` printed (the URL or the key at
// its end), the gateway approves the device in Headscale and its registration key becomes its proxy key; with --ip it
// binds the key to a device already on the tailnet instead, as /register does without Headscale.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { clientFor } from './api-client.js';
import { emit, withJson } from './table.js';
import { wholeNumber } from './units.js';

/** "https://hs.example.com/register/hskey-authreq-XXXX" (or …/register/XXXX?x=y) → its last path segment; a bare key as it is. */
function registrationKey(text: string): string {
  const trimmed = text.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) return trimmed;
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new InvalidArgumentError('not a URL; give the registration key or the URL `tailscale up` printed');
  }
  const last = url.pathname.split('/').filter((segment) => segment !== '').at(-1);
  if (last === undefined) throw new InvalidArgumentError('the URL has no path; expected …/register/<key>');
  return decodeURIComponent(last);
}

interface Registered {
  message: string;
  node: { id: number; ip: string; port: number; protocol: string; keyPrefix: string };
}

export function addEnrollCommand(program: Command): void {
  withJson(
    program
      .command('enroll')
      .description('approve a device waiting in Headscale (POST /register): its registration key becomes its proxy key')
      .argument('<key|url>', 'the registration key, or the whole URL `tailscale up --login-server=…` printed (…/register/<key>)', registrationKey)
      .option('--ip <address>', "bind the key to this tailnet address instead of asking Headscale (no Headscale configured)")
      .option('--port <port>', "the device proxy's port (default: the gateway's TAILGATE_DEVICE_PORT)", wholeNumber(1, 65535))
      .addOption(new Option('--protocol <protocol>', "the device proxy's protocol (default: the gateway's TAILGATE_DEVICE_PROTOCOL)").choices(['http', 'socks5']))
      .option('--name <name>', 'a name for the device'),
  ).action(async (key: string, options: { ip?: string; port?: number; protocol?: string; name?: string; json?: boolean }, command: Command) => {
    const { json: _json, ...device } = options;
    const answer = await clientFor(command).call<Registered>('POST', '/register', { key, ...device });
    emit(command, answer, (a) => `${a.message}\nthe key is now this device's proxy key: key ${a.node.id}, prefix ${a.node.keyPrefix}\n`);
  });
}
