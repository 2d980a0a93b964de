import net from 'node:net';

/** One call to a gateway's management API with a bearer token; the answer's status and parsed JSON. */
export async function adminCall(apiPort: number, token: string, method: string, path: string, body?: unknown, timeoutMs = 5_000): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${apiPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, json: await res.json() };
}

/**
 * A raw CONNECT tunnel through a gateway's HTTP listener to 127.0.0.1:targetPort, kept open by the test. `user`: the
 * proxy user name, the key with parameters (default: the key alone).
 */
export function openTunnel(httpPort: number, key: string, targetPort: number, user = key): Promise<net.Socket> {
  return connectThrough(net.connect(httpPort, '127.0.0.1'), key, targetPort, user);
}

/** The same CONNECT on a socket the caller opened (a TLS connection to the HTTPS proxy, say). */
export function connectThrough<S extends net.Socket>(s: S, key: string, targetPort: number, user = key): Promise<S> {
  return new Promise((resolve, reject) => {
    const auth = Buffer.from(`${user}:${key}`).toString('base64');
    s.setTimeout(5_000, () => s.destroy(new Error('tunnel setup timed out')));
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before the CONNECT answer')));
    s.write(`CONNECT 127.0.0.1:${targetPort} HTTP/1.1\r\nHost: 127.0.0.1:${targetPort}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
    // Read in paused mode, so bytes that arrive with the CONNECT answer (the target may speak first) go back to the
    // stream for the caller instead of being dropped with the answer.
    let head = Buffer.alloc(0);
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = s.read() as Buffer | null) !== null) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) continue;
        s.off('readable', onReadable);
        s.setTimeout(0);
        const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
        if (end + 4 < head.length) s.unshift(head.subarray(end + 4));
        if (!status.startsWith('HTTP/1.1 200')) return reject(new Error(`CONNECT refused: ${status}`));
        return resolve(s);
      }
    };
    s.on('readable', onReadable);
  });
}
