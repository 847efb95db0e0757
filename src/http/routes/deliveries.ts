import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import { z } from 'zod';
import { HttpError, ValidationError } from '../../errors.ts';
import { isUuid, uuidv7 } from '../../ids.ts';
import { parseJsonObject } from '../../intake/parse-body.ts';
import {
  DELIVERY_STATES,
  deliveryJob,
  getDelivery,
  listDeliveries,
  redrive,
  type DeliveryRow,
  type DeliveryState,
} from '../../storage/queries/deliveries.ts';
import { attemptsOf } from '../../storage/queries/delivery-attempts.ts';
import { enqueueJobs } from '../../storage/queries/jobs.ts';
import { statusesOf } from '../../storage/queries/provider-statuses.ts';
import { createEndpoint, deleteEndpoint, getEndpoint, listEndpoints, setEndpointDisabled, type EndpointRow } from '../../storage/queries/webhook-endpoints.ts';
import type { AppEnv } from '../context.ts';
import { bearerToken } from '../middleware/bearer-token.ts';

const CHANNELS = ['email', 'whatsapp', 'webhook'];

export const presentDelivery = (d: DeliveryRow) => ({
  id: d.id,
  channel: d.channel,
  state: d.state,
  eventId: d.event_id,
  eventType: d.event_type,
  userId: d.user_id,
  tenantId: d.tenant_id,
  endpointId: d.endpoint_id,
  destination: d.destination,
  message: d.message,
  heldReason: d.held_reason,
  notBefore: d.not_before,
  digestCount: d.digest_count,
  attempts: d.attempts,
  maxAttempts: d.max_attempts,
  nextAttemptAt: d.next_attempt_at,
  provider: d.provider,
  providerMessageId: d.provider_message_id,
  providerStatus: d.provider_status,
  lastError: d.last_error,
  createdAt: d.created_at,
  sentAt: d.sent_at,
  deadAt: d.dead_at,
});

/** An outbox entry as the recipient would see it. */
export const presentOutbox = (d: DeliveryRow) => {
  const m = d.message;
  const base = { id: d.id, channel: d.channel, eventType: d.event_type, userId: d.user_id, to: d.destination, state: d.state, digestCount: d.digest_count, createdAt: d.created_at, sentAt: d.sent_at };
  if (d.channel === 'email') return { ...base, subject: m.subject, text: m.text, html: m.html ?? null };
  if (d.channel === 'whatsapp') return { ...base, template: m.template, text: m.text ?? null };
  return { ...base, body: m.body };
};

const presentEndpoint = (e: EndpointRow, withSecret = false) => ({
  id: e.id,
  url: e.url,
  tenantId: e.tenant_id,
  eventTypes: e.event_types,
  description: e.description,
  disabled: e.disabled_at !== null,
  disabledAt: e.disabled_at,
  disabledReason: e.disabled_reason,
  createdAt: e.created_at,
  ...(withSecret ? { secret: e.secret } : {}),
});

function limitParam(raw: string | undefined, max = 500): number {
  if (raw === undefined) return 50;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw new ValidationError(`limit must be a whole number from 1 to ${max}`, 'limit');
  return Number(raw);
}

function uuidParam(raw: string | undefined, field: string, notFound?: string): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!isUuid(raw)) {
    if (notFound) throw new HttpError(404, notFound);
    throw new ValidationError(`${field} must be a uuid`, field);
  }
  return raw.toLowerCase();
}

function parseBody<T extends z.ZodType>(schema: T, raw: Buffer): z.infer<T> {
  const parsed = schema.safeParse(raw.length ? parseJsonObject(raw) : {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.map(String).join('.') || 'body';
    throw new ValidationError(`${field}: ${issue.message}`, field);
  }
  return parsed.data;
}

const endpointBody = z.object({
  url: z.string().url().max(2000).refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL'),
  tenantId: z.string().uuid().nullish(),
  eventTypes: z.array(z.string().min(1).max(128)).min(1).nullish(),
  description: z.string().max(500).nullish(),
  secret: z.string().regex(/^whsec_[A-Za-z0-9+/]{22,}={0,2}$/, 'must be whsec_<base64 of at least 16 bytes>').optional(),
});
const endpointPatch = z.object({ disabled: z.boolean() });
const redriveBody = z.union([z.object({ ids: z.array(z.string().uuid()).min(1).max(1000) }), z.object({ all: z.literal(true) })]);

/**
 * The admin API of channel deliveries (bearer ADMIN_TOKEN): the delivery log with every attempt,
 * the dead-letter list and its redrive, the development outbox, and webhook endpoints.
 */
export const deliveryRoutes = new Hono<AppEnv>();
const admin = bearerToken({ token: (s) => s.adminToken, env: 'ADMIN_TOKEN' });
for (const path of ['/api/deliveries', '/api/deliveries/*', '/api/outbox', '/api/webhook-endpoints', '/api/webhook-endpoints/*']) deliveryRoutes.use(path, admin);

deliveryRoutes.get('/api/deliveries', async (c) => {
  const state = c.req.query('state');
  if (state !== undefined && !DELIVERY_STATES.includes(state as DeliveryState)) throw new ValidationError(`state must be one of ${DELIVERY_STATES.join(', ')}`, 'state');
  const channel = c.req.query('channel');
  if (channel !== undefined && !CHANNELS.includes(channel)) throw new ValidationError(`channel must be one of ${CHANNELS.join(', ')}`, 'channel');
  const limit = limitParam(c.req.query('limit'));
  const rows = await listDeliveries(c.get('engine').db, {
    state: state as DeliveryState | undefined,
    channel,
    eventId: uuidParam(c.req.query('eventId'), 'eventId'),
    userId: uuidParam(c.req.query('userId'), 'userId'),
    before: uuidParam(c.req.query('cursor'), 'cursor'),
    limit: limit + 1,
  });
  const page = rows.slice(0, limit);
  return c.json({ deliveries: page.map(presentDelivery), nextCursor: rows.length > limit ? page.at(-1)!.id : null });
});

deliveryRoutes.get('/api/deliveries/:id', async (c) => {
  const { db } = c.get('engine');
  const id = uuidParam(c.req.param('id'), 'id', 'delivery not found')!;
  const d = await getDelivery(db, id);
  if (!d) throw new HttpError(404, 'delivery not found');
  const [attempts, statuses] = await Promise.all([attemptsOf(db, id), statusesOf(db, id)]);
  return c.json({
    delivery: presentDelivery(d),
    attempts: attempts.map((a) => ({ attempt: a.attempt, host: a.host, startedAt: a.started_at, finishedAt: a.finished_at, outcome: a.outcome, response: a.response, error: a.error })),
    statuses: statuses.map((s) => ({ status: s.status, reportedAt: s.reported_at, receivedAt: s.received_at, detail: s.detail })),
  });
});

async function redriveAndEnqueue(c: { get(key: 'engine'): AppEnv['Variables']['engine'] }, which: string[] | 'all-dead') {
  const engine = c.get('engine');
  const ids = await engine.db.transaction(async (tx) => {
    const redriven = await redrive(tx, which, engine.rules.delivery.maxAttempts);
    await enqueueJobs(tx, redriven.map((id) => deliveryJob({ id, runAtMs: null })));
    return redriven;
  });
  return ids;
}

deliveryRoutes.post('/api/deliveries/:id/redrive', async (c) => {
  const id = uuidParam(c.req.param('id'), 'id', 'delivery not found')!;
  const d = await getDelivery(c.get('engine').db, id);
  if (!d) throw new HttpError(404, 'delivery not found');
  if (d.state !== 'dead') throw new HttpError(409, `delivery ${id} is ${d.state}, not dead; only dead deliveries are redriven`);
  const ids = await redriveAndEnqueue(c, [id]);
  if (ids.length === 0) throw new HttpError(409, `delivery ${id} is no longer dead`);
  return c.json({ ok: true, redriven: ids });
});

deliveryRoutes.post('/api/deliveries/redrive', async (c) => {
  const body = parseBody(redriveBody, Buffer.from(await c.req.arrayBuffer()));
  const ids = await redriveAndEnqueue(c, 'all' in body ? 'all-dead' : body.ids.map((s) => s.toLowerCase()));
  return c.json({ ok: true, redriven: ids });
});

deliveryRoutes.get('/api/outbox', async (c) => {
  const channel = c.req.query('channel');
  if (channel !== undefined && channel !== 'email' && channel !== 'whatsapp') throw new ValidationError('channel must be email or whatsapp', 'channel');
  const rows = await listDeliveries(c.get('engine').db, { provider: 'outbox', channel, userId: uuidParam(c.req.query('userId'), 'userId'), limit: limitParam(c.req.query('limit')) });
  return c.json({ messages: rows.map(presentOutbox) });
});

deliveryRoutes.get('/api/webhook-endpoints', async (c) => c.json({ endpoints: (await listEndpoints(c.get('engine').db)).map((e) => presentEndpoint(e)) }));

deliveryRoutes.post('/api/webhook-endpoints', async (c) => {
  const body = parseBody(endpointBody, Buffer.from(await c.req.arrayBuffer()));
  const secret = body.secret ?? `whsec_${randomBytes(24).toString('base64')}`;
  const row = await createEndpoint(c.get('engine').db, {
    id: uuidv7(),
    url: body.url,
    secret,
    tenantId: body.tenantId?.toLowerCase() ?? null,
    eventTypes: body.eventTypes ?? null,
    description: body.description ?? null,
  });
  // The secret is shown once, here; receivers verify webhook-signature with it.
  return c.json({ ok: true, endpoint: presentEndpoint(row, true) }, 201);
});

deliveryRoutes.get('/api/webhook-endpoints/:id', async (c) => {
  const row = await getEndpoint(c.get('engine').db, uuidParam(c.req.param('id'), 'id', 'webhook endpoint not found')!);
  if (!row) throw new HttpError(404, 'webhook endpoint not found');
  return c.json({ endpoint: presentEndpoint(row) });
});

deliveryRoutes.patch('/api/webhook-endpoints/:id', async (c) => {
  const id = uuidParam(c.req.param('id'), 'id', 'webhook endpoint not found')!;
  const body = parseBody(endpointPatch, Buffer.from(await c.req.arrayBuffer()));
  const row = await setEndpointDisabled(c.get('engine').db, id, body.disabled ? 'disabled by an operator' : null);
  if (!row) throw new HttpError(404, 'webhook endpoint not found');
  return c.json({ ok: true, endpoint: presentEndpoint(row) });
});

deliveryRoutes.delete('/api/webhook-endpoints/:id', async (c) => {
  const id = uuidParam(c.req.param('id'), 'id', 'webhook endpoint not found')!;
  if (!(await deleteEndpoint(c.get('engine').db, id))) throw new HttpError(404, 'webhook endpoint not found');
  return c.json({ ok: true, deleted: true });
});
