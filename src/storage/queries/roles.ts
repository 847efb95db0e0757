/**
 * The database roles herald relies on, and the role it connected as. See docs/DEPLOYMENT.md.
 */

/**
 * What a superuser runs once per cluster so that herald's owner role needs no CREATEROLE: the
 * three cluster-wide roles the migrations use (0001, 0009), which then find them and leave them
 * alone. Idempotent. Printed by `herald migrate --print-bootstrap`.
 */
export const BOOTSTRAP_SQL = `-- herald bootstrap: run once per Postgres cluster as a superuser (idempotent).
-- herald_user    an end user's request (SET LOCAL ROLE, under Row Level Security)
-- herald_engine  the engine writing inbox rows
-- herald_runtime what a serving process needs; grant it to the login role herald start uses
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'herald_user') THEN
    CREATE ROLE herald_user NOLOGIN NOBYPASSRLS NOSUPERUSER;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'herald_engine') THEN
    CREATE ROLE herald_engine NOLOGIN NOBYPASSRLS NOSUPERUSER;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'herald_runtime') THEN
    CREATE ROLE herald_runtime NOLOGIN NOBYPASSRLS NOSUPERUSER;
  END IF;
END $$;
GRANT herald_user, herald_engine TO herald_runtime;
`;

export interface ConnectedRole {
  role: string;
  superuser: boolean;
  bypassrls: boolean;
  /** Owns herald's tables (or is a member of their owner): it may switch FORCE ROW LEVEL SECURITY off. */
  owner: boolean;
}

/** The role this connection acts as, and whether Row Level Security confines it. */
export const connectedRoleQuery = `SELECT r.rolname AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
    EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = to_regclass('notifications') AND pg_has_role(r.oid, c.relowner, 'USAGE')) AS owner
  FROM pg_roles r WHERE r.rolname = current_user`;
