// Calls to the management API with the admin token. The token lives in sessionStorage only: it goes with the
// browser tab's session, never to localStorage and never into a URL.

const TOKEN_KEY = 'tailgate.adminToken';

/** An answer the API refused: its status, its error code and its message ("<field>: <reason>"). */
export class ApiFailure extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** @type {((message: string) => void) | undefined} */
let onSignedOut;

/** Called with the API's message when a call answers 401: the app goes back to the sign-in page. */
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * One call. Resolves with the parsed answer; rejects with an ApiFailure naming what the API said was wrong.
 * @param {string} method @param {string} path @param {unknown} [body] @param {string | null} [withToken]
 */
export async function call(method, path, body, withToken = token()) {
  /** @type {Record<string, string>} */
  const headers = {};
  if (withToken) headers.authorization = `Bearer ${withToken}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch {
    throw new ApiFailure(0, 'network', 'The gateway could not be reached: check that it is running and try again.');
  }
  const text = await res.text();
  let json;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (res.ok) return json;
  const failure = new ApiFailure(res.status, json?.error ?? 'http', json?.message ?? `${res.status} ${res.statusText}`);
  if (res.status === 401 && withToken === token()) {
    signOut();
    onSignedOut?.(failure.message);
  }
  throw failure;
}

/** Checks a token against the API and keeps it for this browser session if it is accepted. */
export async function signIn(candidate) {
  await call('GET', '/stats', undefined, candidate);
  sessionStorage.setItem(TOKEN_KEY, candidate);
}
