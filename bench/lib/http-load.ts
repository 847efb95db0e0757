import http from 'node:http';
import { now } from './stats.ts';

export interface PreparedRequest {
  path: string;
  body: Buffer;
  headers: Record<string, string>;
}

export interface LoadResult {
  done: number;
  ms: number;
  latency: Float64Array;
  statuses: Map<number, number>;
  /** Response bodies, by request index. */
  bodies: string[];
}

/** One POST over `agent`; resolves with the status and the body. */
function post(agent: http.Agent, port: number, r: PreparedRequest): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: r.path, method: 'POST', agent, headers: { ...r.headers, 'content-length': String(r.body.length) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(r.body);
  });
}

/**
 * `clients` keep-alive connections, each sending its next prepared request as soon as the last
 * response arrived (closed loop), until every request is sent or `maxMs` passed. Requests are built
 * (and signed) before the clock starts.
 */
export async function httpLoad(port: number, requests: PreparedRequest[], clients: number, maxMs: number): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const latency = new Float64Array(requests.length);
  const statuses = new Map<number, number>();
  const bodies: string[] = new Array(requests.length);
  let next = 0;
  let done = 0;
  const t0 = now();
  const deadline = t0 + maxMs;
  const send = (r: PreparedRequest) => post(agent, port, r);
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < requests.length && now() < deadline) {
        const i = next++;
        const t = now();
        const res = await send(requests[i]!);
        latency[i] = now() - t;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        bodies[i] = res.body;
        done++;
      }
    }),
  );
  const ms = now() - t0;
  agent.destroy();
  return { done, ms, latency: latency.subarray(0, done), statuses, bodies: bodies.slice(0, done) };
}

export interface PacedResponse {
  /** Request index (0, 1, …), in the order they were due. */
  i: number;
  status: number;
  body: string;
  /** From the request's due time to its response (ms): waiting for a free connection counts. */
  latencyMs: number;
}

/**
 * Open loop: request i is due at t0 + i/rate, whatever the earlier ones are doing, over up to
 * `sockets` keep-alive connections (more waiting requests queue in the agent, and that wait is part
 * of their latency: no coordinated omission). Requests are built when due (`make(i)`), so a long
 * run holds no pre-built backlog. Resolves when every sent request has its response.
 */
export async function pacedHttp(
  port: number,
  opts: { rate: number; durationMs: number; sockets: number; make(i: number): PreparedRequest; onResponse(r: PacedResponse): void },
): Promise<{ sent: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.sockets });
  const total = Math.floor((opts.rate * opts.durationMs) / 1000);
  const inFlight = new Set<Promise<void>>();
  const send = (i: number, due: number) => {
    const p = post(agent, port, opts.make(i)).then(
      (res) => opts.onResponse({ i, ...res, latencyMs: now() - due }),
      (err: Error) => opts.onResponse({ i, status: 0, body: err.message, latencyMs: now() - due }),
    );
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
  };
  const t0 = now();
  let next = 0;
  while (next < total) {
    const elapsed = now() - t0;
    // Everything due by now goes out in this turn; then yield for ~2 ms (timers are coarse).
    while (next < total && next <= (elapsed * opts.rate) / 1000) {
      send(next, t0 + (next * 1000) / opts.rate);
      next++;
    }
    await new Promise<void>((r) => setTimeout(r, 2));
  }
  await Promise.all(inFlight);
  agent.destroy();
  return { sent: next };
}
