// A local git server over HTTP(S): `git http-backend` (git's own smart-HTTP CGI program) behind node:http, so git
// clients can clone through a proxy from a server on loopback. Each request runs one http-backend process, as a
// CGI server would; the repository is a bare one made from a single commit at start.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { closeServer, listen, type Listening, type TlsMaterial } from './targets.js';

const run = promisify(execFile);
export const GIT_HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

/** git with no user or system configuration and no prompt: nothing on the machine changes what the test sees. */
export function gitEnv(home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    LANG: 'C',
  };
}

export interface GitServer {
  root: string;
  /** The repository's path under the server: clone `http(s)://host:port/${repo}`. */
  repo: string;
  /** The one file committed in the repository and its content (random, so a clone proves it came from here). */
  file: string;
  content: string;
  http: Listening;
  https: Listening;
  close(): Promise<void>;
}

function backend(root: string) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://git.invalid');
    let pathInfo: string;
    try {
      pathInfo = decodeURIComponent(url.pathname);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' });
      return void res.end('bad path\n');
    }
    const header = (name: string) => (typeof req.headers[name] === 'string' ? (req.headers[name] as string) : undefined);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      REQUEST_METHOD: req.method,
      PATH_INFO: pathInfo,
      QUERY_STRING: url.search.slice(1),
      SERVER_PROTOCOL: 'HTTP/1.1',
      REMOTE_ADDR: req.socket.remoteAddress ?? '',
    };
    // Without CONTENT_LENGTH http-backend reads the body to its end (git sends large bodies chunked).
    if (header('content-length') !== undefined) env.CONTENT_LENGTH = header('content-length');
    if (header('content-type') !== undefined) env.CONTENT_TYPE = header('content-type');
    if (header('content-encoding') !== undefined) env.HTTP_CONTENT_ENCODING = header('content-encoding');
    if (header('git-protocol') !== undefined) env.GIT_PROTOCOL = header('git-protocol');
    const cgi = spawn(GIT_HTTP_BACKEND, [], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    const fail = (why: string) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`git http-backend: ${why}\n`);
    };
    cgi.on('error', (err) => fail(err.message));
    cgi.stdin.on('error', () => {});
    req.pipe(cgi.stdin);
    // CGI answer: header lines (a `Status:` line instead of a status line), a blank line, then the body.
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') + 4 : head.indexOf('\n\n') >= 0 ? head.indexOf('\n\n') + 2 : -1;
      if (end < 0) return;
      cgi.stdout.off('data', onData);
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString('latin1').split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === 'status') status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end));
      cgi.stdout.pipe(res);
    };
    cgi.stdout.on('data', onData);
    cgi.on('close', (code) => {
      if (!res.headersSent) fail(`exited ${code} without an answer`);
    });
  };
}

/** A bare repository with one commit, served by `git http-backend` over HTTP and over HTTPS with `tls`. */
export async function startGitServer(tls: TlsMaterial, host = '127.0.0.1'): Promise<GitServer> {
  if (!existsSync(GIT_HTTP_BACKEND)) throw new Error(`no ${GIT_HTTP_BACKEND}: install git (apt-get install -y git)`);
  const root = await mkdtemp(path.join(os.tmpdir(), 'tailgate-git-'));
  const env = gitEnv(root);
  const work = path.join(root, 'work');
  const repo = 'compat.git';
  const file = 'README.txt';
  const content = `tailgate compatibility ${randomBytes(8).toString('hex')}\n`;
  await mkdir(work);
  const git = (cwd: string, ...args: string[]) => run('git', ['-c', 'user.name=tailgate test', '-c', 'user.email=test@tailgate.invalid', ...args], { cwd, env, timeout: 20_000 });
  await git(work, 'init', '-q', '-b', 'main');
  await writeFile(path.join(work, file), content);
  await git(work, 'add', file);
  await git(work, 'commit', '-q', '-m', 'one commit');
  await git(root, 'clone', '-q', '--bare', work, repo);
  await rm(work, { recursive: true, force: true });
  const plain = http.createServer(backend(root));
  const secure = https.createServer({ cert: tls.cert, key: tls.key }, backend(root));
  const [httpPort, httpsPort] = await Promise.all([listen(plain, host), listen(secure, host)]);
  return {
    root,
    repo,
    file,
    content,
    http: { host, port: httpPort, close: () => closeServer(plain) },
    https: { host, port: httpsPort, close: () => closeServer(secure) },
    async close() {
      await Promise.all([closeServer(plain), closeServer(secure)]);
      await rm(root, { recursive: true, force: true });
    },
  };
}
