import type { Queryable } from '../db.ts';

export interface EndpointRow {
  id: string;
  tenant_id: string | null;
  url: string;
  secret: string;
  event_types: string[] | null;
  description: string | null;
  disabled_at: Date | null;
  disabled_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, tenant_id, url, secret, event_types, description, disabled_at, disabled_reason, created_at, updated_at';

export async function createEndpoint(
  db: Queryable,
  e: { id: string; tenantId: string | null; url: string; secret: string; eventTypes: string[] | null; description: string | null },
): Promise<EndpointRow> {
  const { rows } = await db.query<EndpointRow>(
    `INSERT INTO herald_webhook_endpoints (id, tenant_id, url, secret, event_types, description)
     VALUES ($1, $2, $3, $4, $5::text[], $6) RETURNING ${COLUMNS}`,
    [e.id, e.tenantId, e.url, e.secret, e.eventTypes, e.description],
  );
  return rows[0]!;
}

export async function listEndpoints(db: Queryable): Promise<EndpointRow[]> {
  return (await db.query<EndpointRow>(`SELECT ${COLUMNS} FROM herald_webhook_endpoints ORDER BY created_at, id`)).rows;
}

export async function getEndpoint(db: Queryable, id: string): Promise<EndpointRow | undefined> {
  return (await db.query<EndpointRow>(`SELECT ${COLUMNS} FROM herald_webhook_endpoints WHERE id = $1`, [id])).rows[0];
}

export async function deleteEndpoint(db: Queryable, id: string): Promise<boolean> {
  return (await db.query(`DELETE FROM herald_webhook_endpoints WHERE id = $1`, [id])).rowCount > 0;
}

/** Enables (reason null) or disables an endpoint. */
export async function setEndpointDisabled(db: Queryable, id: string, reason: string | null): Promise<EndpointRow | undefined> {
  const { rows } = await db.query<EndpointRow>(
    `UPDATE herald_webhook_endpoints
     SET disabled_at = CASE WHEN $2::text IS NULL THEN NULL ELSE coalesce(disabled_at, now()) END,
         disabled_reason = $2, updated_at = now()
     WHERE id = $1 RETURNING ${COLUMNS}`,
    [id, reason],
  );
  return rows[0];
}

/** The enabled endpoints an event of `type` (of `tenantId`) goes to. */
export async function endpointsFor(db: Queryable, type: string, tenantId: string | null): Promise<EndpointRow[]> {
  const { rows } = await db.query<EndpointRow>(
    `SELECT ${COLUMNS} FROM herald_webhook_endpoints
     WHERE disabled_at IS NULL
       AND (tenant_id IS NULL OR tenant_id = $2::uuid)
       AND (event_types IS NULL OR $1 = ANY (event_types))
     ORDER BY created_at, id`,
    [type, tenantId],
  );
  return rows;
}
