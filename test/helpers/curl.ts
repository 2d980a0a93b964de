// Real curl as the client. Every call has a hard timeout (curl's own --max-time plus a kill timer).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface CurlResult {
  /** curl's exit code (0 = transfer done; 56 = proxy answered non-2xx to CONNECT; 97 = SOCKS failure; ...). */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** %{http_code} (the target's status, or the proxy's for a plain forwarded request), when written. */
  httpCode: number;
  /** %{http_connect}: the proxy's answer to CONNECT, 0 when none. */
  connectCode: number;
  /** Headers of the last response (the CONNECT answer when that failed), lower-cased names. */
  headers: Record<string, string>;
  /** Every header block curl received, raw. */
  rawHeaders: string;
}

const MARK = '\n@@tailgate-curl@@';

export async function curl(args: string[], timeoutMs = 10_000): Promise<CurlResult> {
  // A file, not /dev/stderr: curl 7.88 crashes writing -D to the stderr pipe it also logs to.
  const headerFile = path.join(os.tmpdir(), `tailgate-curl-${randomBytes(6).toString('hex')}.txt`);
  const full = ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), '-D', headerFile, '-w', `${MARK}%{http_code} %{http_connect}`, ...args];
  const { exitCode, stdout, stderr } = await new Promise<{ exitCode: number; stdout: string; stderr: string }>((resolve) => {
    execFile('curl', full, { timeout: timeoutMs + 2_000, maxBuffer: 64 * 1024 * 1024, encoding: 'latin1' }, (err, stdout, stderr) => {
      const exitCode = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ exitCode, stdout, stderr: err !== null && exitCode === -1 ? `${stderr}\n[curl died: ${err.signal ?? err.message}]` : stderr });
    });
  });
  const rawHeaders = await readFile(headerFile, 'latin1').catch(() => '');
  await rm(headerFile, { force: true });
  const at = stdout.lastIndexOf(MARK);
  const [http, connect] = (at >= 0 ? stdout.slice(at + MARK.length) : '0 0').split(' ').map(Number);
  const headers: Record<string, string> = {};
  const blocks = rawHeaders.split(/\r?\n\r?\n/).filter((b) => b.trim() !== '');
  for (const line of (blocks.at(-1) ?? '').split(/\r?\n/)) {
    const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (m) headers[m[1]!.toLowerCase()] = m[2]!;
  }
  return { exitCode, stdout: at >= 0 ? stdout.slice(0, at) : stdout, stderr, httpCode: http ?? 0, connectCode: connect ?? 0, headers, rawHeaders };
}
