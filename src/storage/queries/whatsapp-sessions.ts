/**
 * WhatsApp sessions (herald_whatsapp_sessions): the last inbound message from each phone, which
 * opens the 24-hour customer-service window.
 */
import type { Queryable } from '../db.ts';

export async function recordInbound(db: Queryable, phone: string, at: Date): Promise<void> {
  await db.query(
    `INSERT INTO herald_whatsapp_sessions (phone, last_inbound_at) VALUES ($1, $2)
     ON CONFLICT (phone) DO UPDATE SET last_inbound_at = greatest(herald_whatsapp_sessions.last_inbound_at, EXCLUDED.last_inbound_at)`,
    [phone, at],
  );
}

/** Whether the 24-hour customer-service window with this phone is open now (database clock). */
export async function sessionOpen(db: Queryable, phone: string): Promise<boolean> {
  const { rows } = await db.query<{ open: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM herald_whatsapp_sessions WHERE phone = $1 AND last_inbound_at > now() - interval '24 hours') AS open`,
    [phone],
  );
  return rows[0]!.open;
}
