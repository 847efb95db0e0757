import type { CompiledRules } from '../rules/compile.ts';
import type { Db } from '../storage/db.ts';
import { createGroupCommit, type GroupCommit } from '../storage/group-commit.ts';
import { insertDirectEvents, type IncomingEvent } from '../storage/queries/events.ts';
import { completeKeys } from '../storage/queries/idempotency.ts';
import type { WriterBounds } from './event-writer.ts';
import { expandEvents } from '../expansion/expand.ts';

/**
 * Resolves with the event's response body once the transaction that delivered it committed, or
 * with null when its idempotency key was already taken (nothing was stored for it).
 */
export type DirectWriter = GroupCommit<IncomingEvent, Record<string, unknown> | null>;

/**
 * Direct mode's hot path: concurrent emits are expanded and delivered together, in one
 * transaction per flush — their events and the claims of their idempotency keys in one statement,
 * their users and preferences in one round trip, their inbox rows, deliveries and "processed"
 * marks in a few set-based statements, their keys' responses in one, one COMMIT — and each request
 * is answered after that COMMIT with its own `inserted` count: one WAL flush for the batch, where
 * a transaction per request (or a key claimed in a transaction of its own) pays one per request.
 * If a flush fails, its events are retried one by one (see group-commit.ts), so a bad event
 * fails alone with its own error, and its key, claimed only inside the rolled-back transaction,
 * stays free for the client's retry — unless it failed because the database is unavailable: then
 * they all fail together (503), and if the COMMIT was sent, the keys make the retries exact.
 */
export function createDirectWriter(db: Db, rules: CompiledRules, opts: { maxBatch: number; ttlHours: number; bounds?: WriterBounds }): DirectWriter {
  return createGroupCommit<IncomingEvent, Record<string, unknown> | null>({
    ...opts.bounds,
    maxBatch: opts.maxBatch,
    // Two, like the event writer: one event with a huge audience then holds up only one of them.
    writers: db.kind === 'pglite' ? 1 : 2,
    // One key per flush: a statement cannot claim a key twice; a duplicate waits for the next flush.
    conflictKey: (e) => e.key ?? undefined,
    flush: (events) =>
      db.transaction(async (tx) => {
        const stored = await insertDirectEvents(tx, events, opts.ttlHours);
        const fresh = events.filter((e) => stored.has(e.id));
        const inserted = fresh.length > 0 ? await expandEvents(tx, rules, fresh) : new Map<string, number>();
        const bodies = events.map((e) =>
          stored.has(e.id) ? { ok: true, delivered: true, inserted: inserted.get(e.id) ?? 0, eventId: e.id } : null,
        );
        // Keyed requests keep their answer with the delivery it describes (same transaction, one statement).
        await completeKeys(
          tx,
          events.flatMap((e, i) => (e.key === null || bodies[i] === null ? [] : [{ key: e.key, status: 200, response: bodies[i] }])),
        );
        return bodies;
      }),
  });
}
