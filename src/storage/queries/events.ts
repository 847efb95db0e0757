import type { Queryable } from '../db.ts';

export interface EventRow {
  id: string;
  type: string;
  ctx: Record<string, unknown>;
  tenant_id: string | null;
  processed_at: Date | null;
}

export async function insertEvent(
  db: Queryable,
  e: { id: string; type: string; ctx: unknown; tenantId: string | null; mode: 'workflow' | 'direct' },
): Promise<void> {
  await db.query(`INSERT INTO herald_events (id, type, ctx, tenant_id, mode) VALUES ($1, $2, $3::jsonb, $4, $5)`, [
    e.id,
    e.type,
    JSON.stringify(e.ctx),
    e.tenantId,
    e.mode,
  ]);
}

export async function getEvent(db: Queryable, id: string): Promise<EventRow | undefined> {
  return (
    await db.query<EventRow>(`SELECT id, type, ctx, tenant_id, processed_at FROM herald_events WHERE id = $1`, [id])
  ).rows[0];
}

export async function markEventProcessed(db: Queryable, id: string, inserted: number): Promise<void> {
  await db.query(`UPDATE herald_events SET processed_at = now(), inserted = $2 WHERE id = $1`, [id, inserted]);
}
