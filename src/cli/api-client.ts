// The management API as the commands call it: one base URL, the admin token as a Bearer header, a deadline on every
// call, and the API's error answer ({"success":false,"message","error"}) turned into the message a command exits with.

import type { Command } from 'commander';

/** A failure the command reports as `tailgate: <message>` and exits with (1 unless told). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const DEFAULT_API_URL = 'http://127.0.0.1:9091';

export interface ApiSettings {
  url: URL;
  token: string | undefined;
  timeoutMs: number;
}

/** `--api-url` over TAILGATE_API_URL over the default; a URL that is not http(s) is a usage error naming its source. */
export function apiSettings(env: NodeJS.ProcessEnv, flags: { apiUrl?: string; timeout: number }): ApiSettings {
  const [text, source] = flags.apiUrl !== undefined ? [flags.apiUrl, '--api-url'] : env.TAILGATE_API_URL ? [env.TAILGATE_API_URL, 'TAILGATE_API_URL'] : [DEFAULT_API_URL, 'the default'];
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`${source}: ${JSON.stringify(text)} is not a URL (for example ${DEFAULT_API_URL})`, 2);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`${source}: must be an http:// or https:// URL`, 2);
  const token = env.TAILGATE_ADMIN_TOKEN?.trim();
  return { url, token: token === '' ? undefined : token, timeoutMs: Math.round(flags.timeout * 1000) };
}

interface ErrorAnswer {
  success?: false;
  message?: string;
  error?: string;
}

export class ApiClient {
  constructor(private readonly settings: ApiSettings) {}

  /** The host the API was reached at, which is where an operator usually finds the proxies too. */
  get host(): string {
    return this.settings.url.hostname;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  /** One request; resolves with the answer's JSON on a 2xx, throws a CliError carrying the API's message otherwise. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    // The base may carry a path prefix (an API behind a reverse proxy); the route is appended to it.
    const url = new URL(this.settings.url.href.replace(/\/+$/, '') + path);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.settings.token !== undefined) headers.authorization = `Bearer ${this.settings.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.settings.timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw this.unreachable(err);
    }
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.ok) {
      if (json === undefined) throw new CliError(`${method} ${path}: the API answered ${res.status} without JSON`);
      return json as T;
    }
    const answer = (typeof json === 'object' && json !== null ? json : {}) as ErrorAnswer;
    if (typeof answer.message === 'string') {
      throw new CliError(`${answer.message} (${res.status}${answer.error === undefined ? '' : ` ${answer.error}`})`);
    }
    throw new CliError(`${method} ${path}: the API answered ${res.status} ${res.statusText}${text === '' ? '' : `: ${text.slice(0, 200)}`}`);
  }

  private unreachable(err: unknown): CliError {
    const where = this.settings.url.origin;
    if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
      return new CliError(`the API at ${where} did not answer within ${this.settings.timeoutMs / 1000} s (--timeout)`);
    }
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
    const detail = (cause as NodeJS.ErrnoException).code ?? (cause instanceof Error ? cause.message : String(cause));
    return new CliError(`cannot reach the API at ${where} (${detail}); is tailgate running? set TAILGATE_API_URL or --api-url`);
  }
}

/** The client for a command, from the program's --api-url and --timeout and the environment. */
export function clientFor(command: Command): ApiClient {
  return new ApiClient(apiSettings(process.env, command.optsWithGlobals<{ apiUrl?: string; timeout: number }>()));
}
