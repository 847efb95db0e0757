/**
 * Run-scoped events (herald_run_events): a notify for one run that found no waiter is kept, and
 * the run's next wait on that event id takes it (the wait's lookback). The advisory lock orders a
 * wait's registration with such a notify, so neither can slip between the other's check and write.
 */
import type { Queryable } from '../db.ts';
import { recordStep, type StepRow } from './steps.ts';

/**
 * Serializes "a wait registers" with "a run-scoped notify stores its event" for one (run, event
 * id), so a notify can never land between the wait's lookback check and its waiter insert.
 */
export async function lockRunEvent(tx: Queryable, runId: string, eventId: string): Promise<void> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext('herald.wait'), hashtext($1 || '/' || $2))`, [runId, eventId]);
}

/** Keeps a run-scoped notify that found no waiter, for the run's next wait on that event id. */
export async function storeRunEvent(
  tx: Queryable,
  e: { runId: string; eventId: string; body: Buffer; contentType: string | null },
): Promise<string> {
  const { rows } = await tx.query<{ message_id: string }>(
    `INSERT INTO herald_run_events (run_id, event_id, body, content_type, message_id)
     VALUES ($1, $2, $3, $4, 'msg_' || replace(gen_random_uuid()::text, '-', ''))
     RETURNING message_id`,
    [e.runId, e.eventId, e.body, e.contentType],
  );
  return rows[0]!.message_id;
}

/** Takes the oldest stored event for (run, event id), if any (the wait's lookback). */
export async function takeRunEvent(
  tx: Queryable,
  runId: string,
  eventId: string,
): Promise<{ body: Buffer; content_type: string | null; message_id: string } | undefined> {
  const { rows } = await tx.query<{ body: Buffer; content_type: string | null; message_id: string }>(
    `DELETE FROM herald_run_events
     WHERE id = (SELECT id FROM herald_run_events WHERE run_id = $1 AND event_id = $2 ORDER BY id LIMIT 1)
     RETURNING body, content_type, message_id`,
    [runId, eventId],
  );
  const r = rows[0];
  if (r && !Buffer.isBuffer(r.body)) r.body = Buffer.from(r.body as Uint8Array);
  return r;
}

/** Records a wait completed from a stored event (lookback), with the event's bytes. */
export async function recordWaitFromEvent(
  tx: Queryable,
  w: { runId: string; stepId: string; eventId: string; timeout: string; body: Buffer; contentType: string | null; messageId: string },
): Promise<StepRow> {
  return recordStep(tx, {
    runId: w.runId,
    stepId: w.stepId,
    type: 'wait',
    output: { eventId: w.eventId, timeout: false, timeoutDuration: w.timeout, messageId: w.messageId },
    outputBytes: w.body,
    contentType: w.contentType,
  });
}
