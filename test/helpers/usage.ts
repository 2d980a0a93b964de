// Moving a known number of bytes through a gateway, and reading what usage accounting wrote.
import { execFile } from 'node:child_process';
import type postgres from 'postgres';
import { openTunnel } from './connect-tunnel.js';
import { payload } from './targets.js';

export interface Moved {
  up: number;
  down: number;
}

/**
 * curl through a proxy (`proxyArgs`: -x ... or --socks5-hostname ...), its own count of what it sent and received: the
 * request's head and body, the response's heads and body. `body`: uploaded from curl's stdin.
 */
export function curlMoved(proxyArgs: string[], url: string, extra: string[] = [], body?: Buffer): Promise<Moved & { code: number }> {
  const upload = body === undefined ? [] : ['--data-binary', '@-'];
  const args = ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code} %{size_request} %{size_upload} %{size_header} %{size_download}', ...proxyArgs, ...upload, ...extra, url];
  return new Promise((resolve, reject) => {
    const child = execFile('curl', args, { timeout: 12_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`curl failed: ${err.message} ${stderr}`));
      const [code, request, uploaded, header, download] = stdout.trim().split(' ').map(Number);
      resolve({ code: code!, up: request! + uploaded!, down: header! + download! });
    });
    child.stdin!.end(body);
  });
}

/** n bytes through a CONNECT tunnel to an echo target and back, then closed from the client: n each way. */
export async function echoThrough(httpPort: number, key: string, echoPort: number, n: number): Promise<Moved> {
  const s = await openTunnel(httpPort, key, echoPort);
  await new Promise<void>((resolve, reject) => {
    let got = 0;
    const timer = setTimeout(() => reject(new Error(`echo of ${n} bytes timed out at ${got}`)), 10_000);
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= n) s.end();
    });
    s.once('close', () => {
      clearTimeout(timer);
      if (got === n) resolve();
      else reject(new Error(`echoed ${got} of ${n} bytes`));
    });
    s.write(payload(n));
  });
  return { up: n, down: n };
}

export interface UsageSums {
  up: number;
  down: number;
  tunnels: number;
  refused: number;
  failures: number;
}

/** Every bucket of a key (or device) added up, straight from the table. */
export async function usageOf(sql: postgres.Sql, column: 'key_id' | 'device_id', id: number): Promise<UsageSums> {
  const [row] = await sql.unsafe<{ up: string; down: string; tunnels: string; refused: string; failures: string }[]>(
    `SELECT coalesce(sum(bytes_up), 0)::bigint AS up, coalesce(sum(bytes_down), 0)::bigint AS down, coalesce(sum(tunnels), 0)::bigint AS tunnels,
       coalesce(sum(refused), 0)::bigint AS refused, coalesce(sum(failures), 0)::bigint AS failures
     FROM usage_hourly WHERE ${column} = $1`,
    [id],
  );
  return { up: Number(row!.up), down: Number(row!.down), tunnels: Number(row!.tunnels), refused: Number(row!.refused), failures: Number(row!.failures) };
}
