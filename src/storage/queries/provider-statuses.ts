/**
 * Provider status reports (herald_delivery_statuses): what an email or WhatsApp provider said
 * about a message it accepted, recorded on the delivery it belongs to and read back.
 */
import type { Queryable } from '../db.ts';

export async function statusesOf(db: Queryable, id: string) {
  return (
    await db.query<{ status: string; reported_at: Date | null; detail: unknown; received_at: Date }>(
      `SELECT status, reported_at, detail, received_at FROM herald_delivery_statuses WHERE delivery_id = $1 ORDER BY id`,
      [id],
    )
  ).rows;
}

/** A provider's status report for a message it accepted; returns the delivery it belongs to. */
export async function recordProviderStatus(
  db: Queryable,
  s: { provider: string; providerMessageId: string; status: string; reportedAt: Date | null; detail: unknown },
): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(
    `WITH d AS (
       UPDATE herald_deliveries SET provider_status = $3, updated_at = now()
       WHERE provider = $1 AND provider_message_id = $2 RETURNING id)
     INSERT INTO herald_delivery_statuses (delivery_id, status, reported_at, detail)
     SELECT id, $3, $4, $5::jsonb FROM d RETURNING delivery_id AS id`,
    [s.provider, s.providerMessageId, s.status, s.reportedAt, JSON.stringify(s.detail ?? {})],
  );
  return rows[0]?.id;
}
