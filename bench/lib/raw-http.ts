import net from 'node:net';
import { now } from './stats.ts';
import type { PreparedRequest } from './http-load.ts';

/**
 * An open-loop HTTP/1.1 load generator on bare sockets, for the overload case: request i is due
 * at t0 + i/rate, goes out on a free keep-alive connection (at most `sockets`, one request in
 * flight on each), and one that waits for a connection waits from its due time (no coordinated
 * omission). It does what wrk does in C: the requests are written as bytes and a response is
 * read as far as its status line, its length and (only when asked for) its body, nothing more.
 *
 * Why not undici or node:http: at 3× herald's capacity the generator shares the box's two cores
 * with the server it measures and with Postgres. undici's Pool took ~86 µs of CPU per request
 * here (79 % of a core at 9,200/s) and node:http more; the time the server then waits for a
 * core is the generator's cost, not herald's. This client spends a fraction of that.
 */
export interface RawLoadOptions {
  rate: number;
  durationMs: number;
  sockets: number;
  make(i: number): PreparedRequest;
  /** Whether the body of a response with this status is wanted (else it is skipped unread). */
  wantsBody(status: number): boolean;
  /** `latencyMs` from the due time; `waitedMs` of it before the request was written to a connection. */
  onResponse(status: number, body: string, latencyMs: number, waitedMs: number): void;
}

interface Pending {
  due: number;
  bytes: Buffer;
  /** When it was written to its connection (the wait before is the generator's or the pool's). */
  sentAt: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');

/** The request's bytes: a keep-alive POST with a Content-Length. */
function encode(host: string, r: PreparedRequest): Buffer {
  const body = r.body;
  let head = `POST ${r.path} HTTP/1.1\r\nhost: ${host}\r\ncontent-length: ${body.length}\r\n`;
  for (const [k, v] of Object.entries(r.headers ?? {})) head += `${k}: ${v}\r\n`;
  return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), body]);
}

/** One keep-alive connection with at most one request in flight. */
class Connection {
  private socket: net.Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private inFlight: Pending | undefined;
  closed = false;
  readonly connected: Promise<void>;

  constructor(
    port: number,
    private readonly opts: RawLoadOptions,
    private readonly onFree: (c: Connection) => void,
    private readonly onClosed: (c: Connection) => void,
  ) {
    this.socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    // Settles on close too: a refused connect must not hang the start of the window.
    this.connected = new Promise<void>((resolve) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('close', () => resolve());
    });
    this.socket.on('data', (chunk: Buffer) => this.read(chunk));
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      const lost = this.inFlight;
      this.inFlight = undefined;
      if (lost) this.opts.onResponse(0, 'connection closed', now() - lost.due, lost.sentAt - lost.due);
      this.onClosed(this);
    });
  }

  get busy(): boolean {
    return this.inFlight !== undefined;
  }

  send(p: Pending): void {
    this.inFlight = p;
    p.sentAt = now();
    this.socket.write(p.bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private read(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      const head = this.buffer.indexOf(HEADER_END);
      if (head < 0) return;
      const headers = this.buffer.toString('latin1', 0, head).toLowerCase();
      const status = Number(headers.slice(9, 12));
      // Herald's answers carry a Content-Length; Node's own 400/408 do not, have no body and close.
      const length = /\r\ncontent-length: *(\d+)/.exec(headers);
      const end = head + 4 + (length ? Number(length[1]) : 0);
      if (this.buffer.length < end) return;
      const body = this.opts.wantsBody(status) ? this.buffer.toString('utf8', head + 4, end) : '';
      this.buffer = this.buffer.subarray(end);
      const done = this.inFlight;
      this.inFlight = undefined;
      if (!done) {
        // An answer to nothing sent: the connection cannot be trusted to pair answers any more.
        this.closed = true;
        this.socket.destroy();
        return;
      }
      this.opts.onResponse(status, body, now() - done.due, done.sentAt - done.due);
      if (headers.includes('\r\nconnection: close')) {
        this.closed = true;
        this.socket.end();
        return;
      }
      this.onFree(this);
    }
  }
}

export async function pacedRaw(port: number, opts: RawLoadOptions): Promise<void> {
  const host = `127.0.0.1:${port}`;
  const total = Math.floor((opts.rate * opts.durationMs) / 1000);
  const waiting: Pending[] = [];
  let head = 0;
  const idle: Connection[] = [];
  const all = new Set<Connection>();
  let answered = 0;
  let stopped = false;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const countAnswer = (): void => {
    if (++answered === total) finish();
  };
  const options: RawLoadOptions = {
    ...opts,
    onResponse(status, body, latencyMs, waitedMs) {
      if (stopped) return; // after giving up on the missing answers, nothing more is counted
      opts.onResponse(status, body, latencyMs, waitedMs);
      countAnswer();
    },
  };
  const onFree = (c: Connection): void => {
    if (head < waiting.length) c.send(waiting[head++]!);
    else idle.push(c);
  };
  const onClosed = (c: Connection): void => {
    all.delete(c);
    // Requests waiting for a connection get a new one in its place.
    if (head < waiting.length && all.size < opts.sockets) {
      const fresh = new Connection(port, options, onFree, onClosed);
      all.add(fresh);
      fresh.send(waiting[head++]!);
    }
  };
  const dispatch = (p: Pending): void => {
    let c = idle.pop();
    while (c && c.closed) c = idle.pop();
    if (c) return c.send(p);
    if (all.size < opts.sockets) {
      const fresh = new Connection(port, options, onFree, onClosed);
      all.add(fresh);
      return fresh.send(p);
    }
    waiting.push(p);
  };

  // Every connection is open before the first request is due: a burst of connects at the start
  // would overflow the server's listen backlog (511 in Node), and a dropped SYN is retried after
  // a second, which would measure the kernel's retransmit timer, not herald.
  for (let i = 0; i < opts.sockets; i++) {
    const c = new Connection(port, options, onFree, onClosed);
    all.add(c);
    idle.push(c);
    if (i % 64 === 63) await c.connected;
  }
  await Promise.all([...all].map((c) => c.connected));

  const t0 = now();
  let next = 0;
  while (next < total) {
    const elapsed = now() - t0;
    while (next < total && next <= (elapsed * opts.rate) / 1000) {
      const due = t0 + (next * 1000) / opts.rate;
      dispatch({ due, bytes: encode(host, opts.make(next++)), sentAt: 0 });
    }
    // Compact the waiting list now and then, so it does not keep every request ever queued.
    if (head > 10_000) {
      waiting.splice(0, head);
      head = 0;
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 2));
  }
  // Answers still missing a minute after the window are counted as errors (status 0), so a
  // server that stops answering ends the case instead of hanging it.
  if (total > 0) {
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'gave up'>((resolve) => (timer = setTimeout(() => resolve('gave up'), 60_000)));
    if ((await Promise.race([finished, gaveUp])) === 'gave up') {
      const missing = total - answered;
      for (let i = 0; i < missing; i++) opts.onResponse(0, 'no answer within 60 s of the window', now() - t0, 0);
    }
    clearTimeout(timer);
  }
  stopped = true;
  for (const c of all) c.destroy();
}
