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
  const send = (r: PreparedRequest) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
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
