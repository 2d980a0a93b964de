// Real connected sockets registered as a key's tunnels, the way the proxy listeners register their clients, for
// tests of revocation without a proxy in between.
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { TunnelRegistry } from '../../src/tunnel/registry.js';

export interface OpenTunnel {
  /** The client end; the server end is the one registered. */
  client: Socket;
  /** Resolves when the client end sees the tunnel closed; rejects if that takes more than 5 s. */
  closed(): Promise<void>;
}

export interface TunnelSockets {
  open(keyHash: string): Promise<OpenTunnel>;
  close(): Promise<void>;
}

export async function startTunnelSockets(registry: TunnelRegistry): Promise<TunnelSockets> {
  const accepted: Socket[] = [];
  const server: Server = createServer((s) => accepted.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;

  async function open(keyHash: string): Promise<OpenTunnel> {
    const before = accepted.length;
    const client = connect(port, '127.0.0.1');
    client.on('error', () => {});
    let clientClosed = false;
    client.once('close', () => (clientClosed = true));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('tunnel socket not accepted within 5 s')), 5_000);
      const poll = () => (accepted.length > before ? (clearTimeout(timer), resolve()) : setImmediate(poll));
      poll();
    });
    const tunnel = accepted[accepted.length - 1]!;
    registry.add(keyHash, tunnel);
    // As the proxies' relay does: a closed tunnel leaves the registry.
    tunnel.once('close', () => registry.remove(keyHash, tunnel));
    const closed = () =>
      clientClosed
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('tunnel not closed within 5 s')), 5_000);
            client.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
          });
    return { client, closed };
  }

  return {
    open,
    async close() {
      for (const s of accepted) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
