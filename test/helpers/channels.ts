import { randomUUID } from 'node:crypto';
import type { HeraldConfig } from '../../src/rules/types.ts';
import { getDelivery, type DeliveryRow, type DeliveryState } from '../../src/storage/queries/deliveries.ts';
import { attemptsOf, type AttemptRow } from '../../src/storage/queries/delivery-attempts.ts';
import { eventually } from './herald.ts';
import { ADMIN_TOKEN, createWorkflowHerald, type WorkflowHerald } from './workflow.ts';

export const TENANT = '0190a0a0-0000-7000-8000-00000000000a';
export const ANA = '0190a0a0-0000-7000-8000-0000000000a1';
export const BEN = '0190a0a0-0000-7000-8000-0000000000b2';

export interface ChannelHerald extends WorkflowHerald {
  /** Emits (signed) and returns the event id once the event has been expanded. */
  emit(type: string, ctx: Record<string, unknown>): Promise<string>;
  /** Puts a user in the directory. */
  user(id: string, fields: Record<string, unknown>): Promise<void>;
  /** The deliveries an event produced, oldest first. */
  deliveriesOf(eventId: string): Promise<DeliveryRow[]>;
  /** Waits until the delivery is in one of `states` and returns it. */
  until(id: string, states: DeliveryState[], ms?: number): Promise<DeliveryRow>;
  attempts(id: string): Promise<AttemptRow[]>;
  /** A request to the admin API. */
  admin(path: string, init?: RequestInit): Promise<Response>;
}

/** A herald with a running worker, for channel tests (workflow mode: the worker expands events). */
export async function createChannelHerald(config: HeraldConfig, env: Record<string, string> = {}): Promise<ChannelHerald> {
  const h = await createWorkflowHerald(config, env);
  return {
    ...h,
    async emit(type, ctx) {
      // A fresh Idempotency-Key: x-signature requests are otherwise deduplicated by body hash, and
      // tests emit identical bodies on purpose.
      const res = await h.post('/api/notifications/emit', { type, ctx }, { headers: { 'idempotency-key': randomUUID() } });
      const body = (await res.json()) as { eventId?: string; error?: string };
      if (res.status !== 200 || !body.eventId) throw new Error(`emit ${type} answered ${res.status}: ${JSON.stringify(body)}`);
      await eventually(async () => {
        const { rows } = await h.db.query<{ processed_at: Date | null }>(`SELECT processed_at FROM herald_events WHERE id = $1`, [body.eventId]);
        return rows[0]?.processed_at != null;
      });
      return body.eventId;
    },
    async user(id, fields) {
      const res = await h.post(`/api/users/${id}`, { tenantId: TENANT, ...fields }, { method: 'PUT' });
      if (res.status >= 300) throw new Error(`PUT user answered ${res.status}: ${await res.text()}`);
    },
    async deliveriesOf(eventId) {
      const { rows } = await h.db.query<{ id: string }>(`SELECT id FROM herald_deliveries WHERE event_id = $1 ORDER BY created_at, id`, [eventId]);
      return Promise.all(rows.map(async (r) => (await getDelivery(h.db, r.id))!));
    },
    async until(id, states, ms = 15_000) {
      try {
        return await eventually(async () => {
          const d = await getDelivery(h.db, id);
          return d && states.includes(d.state) ? d : undefined;
        }, ms);
      } catch (err) {
        const d = await getDelivery(h.db, id);
        throw new Error(`delivery ${id} is ${d?.state} (${d?.last_error ?? 'no error'}), expected ${states.join('/')}: ${(err as Error).message}`);
      }
    },
    attempts: (id) => attemptsOf(h.db, id),
    async admin(path, init = {}) {
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${ADMIN_TOKEN}`);
      if (init.body && !headers.has('content-type')) headers.set('content-type', 'application/json');
      return h.app.request(path, { ...init, headers });
    },
  };
}
