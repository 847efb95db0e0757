import type { Db } from './db.ts';
import { connectedRoleQuery, type ConnectedRole } from './queries/roles.ts';

/**
 * Why Row Level Security would not confine the role herald connected as, in one sentence, or
 * undefined when it does. A superuser or BYPASSRLS role skips every policy even under FORCE ROW
 * LEVEL SECURITY, so a session that leaves herald_user (RESET ROLE) reads every inbox; the tables'
 * owner can switch FORCE off. PGlite is embedded and always a superuser: nothing else to suggest.
 */
export async function unconfinedRole(db: Db): Promise<string | undefined> {
  if (db.kind !== 'postgres') return undefined;
  const r = (await db.query<ConnectedRole>(connectedRoleQuery)).rows[0];
  if (!r || !(r.superuser || r.bypassrls || r.owner)) return undefined;
  const what = [r.superuser && 'a superuser', r.bypassrls && 'a BYPASSRLS role', r.owner && "the owner of herald's tables"].filter(Boolean);
  const why =
    r.superuser || r.bypassrls
      ? 'Row Level Security does not apply to it, so a session that leaves herald_user (RESET ROLE) reads every inbox'
      : 'it may switch Row Level Security off (ALTER TABLE … NO FORCE ROW LEVEL SECURITY)';
  return (
    `herald connects to Postgres as "${r.role}", ${what.join(' and ')}: ${why}. Serve as a login role without ` +
    `SUPERUSER or BYPASSRLS that owns nothing and is a member of herald_runtime; migrate as the owner (docs/DEPLOYMENT.md).`
  );
}
