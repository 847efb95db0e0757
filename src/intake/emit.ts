import { createHash } from 'node:crypto';
import { HttpError } from '../errors.ts';
import { isUuid, uuidv7 } from '../ids.ts';
import { ruleFor, validateCtx, type CompiledRules } from '../rules/compile.ts';
import { planEvent, type Plan } from '../rules/plan.ts';
import type { Db, Queryable } from '../storage/db.ts';
import { runsToStart, startRunsForEvent, type StartedRun } from '../workflow/start.ts';
import { insertEvent, type IncomingEvent } from '../storage/queries/events.ts';
import { readKey } from '../storage/queries/idempotency.ts';
import { enqueueJob } from '../storage/queries/jobs.ts';
import { directoryOn } from '../storage/queries/users.ts';
import type { DirectWriter } from './direct-writer.ts';
import type { EventWriter } from './event-writer.ts';
import { parseEmitBody } from './parse-body.ts';
import { EXPAND_EVENT_JOB } from '../expansion/expand-job.ts';

export interface IntakeDeps {
  db: Db;
  rules: CompiledRules;
  workflowMode: boolean;
  idempotencyTtlHours: number;
  /** Group-commits workflow-mode events (see event-writer.ts). */
  writer: EventWriter;
  /** Delivers direct-mode events, many per transaction (see direct-writer.ts). */
  directWriter: DirectWriter;
}

export interface EmitRequest {
  rawBody: Buffer;
  /** Idempotency-Key header, webhook-id, or a key derived from a legacy signature. */
  idempotencyKey?: string;
  /** True once the client has gone away: an emit still waiting for its write is then dropped. */
  abandoned?(): boolean;
}

export interface EmitOutcome {
  status: number;
  body: Record<string, unknown>;
  /** true when this is the stored response of an earlier request with the same key. */
  replayed: boolean;
}

/** What a client may send as Idempotency-Key (checked by the HTTP layer, before namespacing). */
export const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,255}$/;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Accepts one event. Validation happens before anything is stored; the event, its queued job (or,
 * in direct mode, its notifications) and the idempotency record commit in one transaction, so an
 * acknowledged event is never lost and a retried one never doubles.
 */
export async function emit(deps: IntakeDeps, req: EmitRequest): Promise<EmitOutcome> {
  const { type, ctx: rawCtx } = parseEmitBody(req.rawBody);
  const rule = ruleFor(deps.rules, type);
  const ctx = validateCtx(rule, rawCtx);

  const event = incoming(type, ctx, req.idempotencyKey, req.rawBody);
  return deps.workflowMode ? emitGrouped(deps, event, req.abandoned) : emitDirect(deps, event, req.abandoned);
}

/** The event as every intake path takes it: its id, its tenant, and with a key the body's hash. */
function incoming(type: string, ctx: Record<string, unknown>, key: string | undefined, rawBody: Buffer): IncomingEvent {
  return {
    id: uuidv7(),
    type,
    ctx,
    tenantId: isUuid(ctx.tenantId) ? ctx.tenantId.toLowerCase() : null,
    key: key ?? null,
    // The body's hash only matters with a key (a retry must match its first body).
    bodySha256: key === undefined ? null : sha256(rawBody),
  };
}

/**
 * Direct mode: the event is delivered with the concurrent emits in one transaction
 * (direct-writer.ts), which also claims its key and stores the response with it. If the key was
 * taken, nothing was written for this request and the stored response (or the conflict) is the
 * answer. A failed delivery leaves no key behind (it was claimed in the rolled-back transaction).
 */
async function emitDirect(deps: IntakeDeps, event: IncomingEvent, abandoned?: () => boolean): Promise<EmitOutcome> {
  const body = await deps.directWriter.submit(event, { abandoned });
  if (body) return { status: 200, body, replayed: false };
  return replayOrConflict(deps, event.key!, event.bodySha256!);
}

/**
 * Workflow mode: the event and its key ride in the next group commit, whose events share one
 * expansion job, with a run of every workflow subscribed to its type. The response is known before
 * the write (the event's and runs' ids are ours), so the key is stored 'done' with it in the same
 * statement; if the key was taken, nothing was written for this request (no event, no run) and the
 * stored response (or the conflict) is the answer.
 */
async function emitGrouped(deps: IntakeDeps, event: IncomingEvent, abandoned?: () => boolean): Promise<EmitOutcome> {
  const runs = runsToStart(deps.rules.workflows, event.type);
  const body = { ok: true, workflow: 'queued', eventId: event.id, ...(runs.length ? { workflowRuns: runs.map((r) => r.id) } : {}) };
  const submitted = runs.length ? { ...event, runs, response: body } : { ...event, response: body };
  if (await deps.writer.submit(submitted, { abandoned })) return { status: 200, body, replayed: false };
  return replayOrConflict(deps, event.key!, event.bodySha256!);
}

async function replayOrConflict(deps: IntakeDeps, key: string, bodyHash: string): Promise<EmitOutcome> {
  const existing = await readKey(deps.db, key);
  if (!existing) {
    // Gone between the failed claim and this read (pruned as expired): the client may retry.
    throw new HttpError(409, 'a request with this idempotency key is being processed; retry', { 'Retry-After': '1' });
  }
  if (existing.body_sha256 !== bodyHash) {
    throw new HttpError(422, 'this idempotency key was already used with a different request body');
  }
  if (existing.state === 'pending') {
    throw new HttpError(409, 'a request with this idempotency key is still in flight; retry shortly', { 'Retry-After': '1' });
  }
  return { status: existing.status ?? 200, body: existing.response as Record<string, unknown>, replayed: true };
}

/**
 * Workflow mode's intake, in the caller's transaction: the event, the job that expands it through
 * the rules, and a run of every workflow subscribed to it. Used by `step.send` (an emit of such an
 * event takes the event writer's group commit instead).
 */
export async function acceptEvent(
  tx: Queryable,
  rules: CompiledRules,
  event: { id: string; type: string; ctx: Record<string, unknown>; tenantId: string | null },
): Promise<StartedRun[]> {
  await insertEvent(tx, { ...event, mode: 'workflow' });
  await enqueueJob(tx, { kind: EXPAND_EVENT_JOB, payload: { eventId: event.id } });
  return startRunsForEvent(tx, rules.workflows, event);
}

/** The dry run: what an event would produce, and why each recipient is included or skipped. */
export async function dryRun(deps: IntakeDeps, rawBody: Buffer): Promise<Plan & { ok: true; dryRun: true }> {
  const { type, ctx: rawCtx } = parseEmitBody(rawBody);
  const rule = ruleFor(deps.rules, type);
  const ctx = validateCtx(rule, rawCtx);
  const plan = await planEvent(deps.rules, rule, 'dry-run', ctx, directoryOn(deps.db));
  return { ok: true, dryRun: true, ...plan };
}
