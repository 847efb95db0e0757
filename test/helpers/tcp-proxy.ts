import net from 'node:net';

/**
 * A TCP proxy of the test's own between herald and Postgres, on loopback: the test cuts it (every
 * open connection reset, new ones refused or left hanging) and restores it, to play a database
 * that blinks without touching the machine's shared server.
 */
export interface TcpProxy {
  readonly port: number;
  /** Connections currently open through the proxy. */
  readonly open: number;
  /**
   * 'refuse': reset every open connection and refuse new ones (a server that went away).
   * 'blackhole': keep accepting TCP but forward nothing, either way (a server that hangs); open
   * connections stall too.
   */
  cut(mode?: 'refuse' | 'blackhole'): void;
  /** Forward again; connections made from now on reach Postgres. */
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: 'up' | 'refuse' | 'blackhole' = 'up';
  const pairs = new Set<{ client: net.Socket; upstream?: net.Socket }>();

  const server = net.createServer((client) => {
    const pair: { client: net.Socket; upstream?: net.Socket } = { client };
    pairs.add(pair);
    client.on('close', () => {
      pairs.delete(pair);
      pair.upstream?.destroy();
    });
    client.on('error', () => {});
    if (mode === 'refuse') return void client.resetAndDestroy();
    // Accepted, never answered; what the client sends is read and dropped, so its close is seen.
    if (mode === 'blackhole') return void client.resume();
    const upstream = net.connect(target.port, target.host);
    pair.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    get open() {
      return pairs.size;
    },
    cut(to = 'refuse') {
      mode = to;
      for (const pair of pairs) {
        if (to === 'refuse') {
          pair.upstream?.destroy();
          pair.client.resetAndDestroy();
        } else {
          // Stop forwarding in both directions; the sockets stay open and silent. The client's bytes
          // are read and dropped (not left unread), so a client that gives up and closes is seen
          // to go (`open` counts it out).
          pair.client.unpipe();
          pair.upstream?.unpipe();
          pair.client.resume();
          pair.upstream?.pause();
        }
      }
    },
    restore() {
      // Stalled connections stay dead (their protocol state is lost); new ones go through.
      if (mode === 'blackhole') for (const pair of pairs) {
        pair.upstream?.destroy();
        pair.client.resetAndDestroy();
      }
      mode = 'up';
    },
    async close() {
      for (const pair of pairs) {
        pair.upstream?.destroy();
        pair.client.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The same URL, pointed at the proxy. */
export function viaProxy(url: string, proxy: TcpProxy): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString();
}
