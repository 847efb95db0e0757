-- herald 0009: herald_runtime, everything a serving process needs when it is not the owner.
-- The least-privilege setup (docs/DEPLOYMENT.md): an owner role runs the migrations; `herald start`
-- connects as a login role that is a member of herald_runtime, with neither SUPERUSER nor
-- BYPASSRLS. It reads and writes herald's tables and switches to herald_user / herald_engine with
-- SET LOCAL ROLE, but owns nothing: it cannot turn Row Level Security off, change the schema, or
-- SET ROLE to anything else. A single role that owns everything (the default) ignores this role.
--
-- Roles are cluster-wide: made here when missing (a superuser or CREATEROLE owner), or once by a
-- DBA with `herald migrate --print-bootstrap`, which this migration then finds and leaves alone.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'herald_runtime') THEN
    BEGIN CREATE ROLE herald_runtime NOLOGIN NOBYPASSRLS NOSUPERUSER;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; -- a sibling database's migration won the race
  END IF;
  IF NOT (pg_has_role('herald_runtime', 'herald_user', 'MEMBER') AND pg_has_role('herald_runtime', 'herald_engine', 'MEMBER')) THEN
    BEGIN GRANT herald_user, herald_engine TO herald_runtime;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE EXCEPTION 'role % may not create role herald_runtime or grant it herald_user and herald_engine: '
    'have a superuser run the output of `herald migrate --print-bootstrap` once on this cluster (docs/DEPLOYMENT.md)', current_user;
END $$;

-- Table privileges, not ownership. A migration that adds a table grants it here too
-- (test/storage/least-privilege.test.ts checks every herald table).
GRANT SELECT ON herald_migrations TO herald_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON
  herald_users, herald_events, herald_idempotency_keys, herald_jobs,
  herald_runs, herald_steps, herald_waiters, herald_run_events, herald_dlq,
  herald_flow_slots, herald_flow_windows,
  herald_deliveries, herald_delivery_attempts, herald_delivery_statuses, herald_webhook_endpoints,
  herald_preferences, herald_quiet_hours, herald_whatsapp_sessions
TO herald_runtime;
-- notifications: nothing directly. The engine writes inboxes as herald_engine, users read theirs
-- as herald_user (0001); herald_runtime reaches both only through SET LOCAL ROLE.

-- The tables 0005 put under FORCE ROW LEVEL SECURITY with a policy for the role that migrated
-- them (the engine, when one role does everything): the same access for the runtime role.
CREATE POLICY herald_deliveries_runtime ON herald_deliveries FOR ALL TO herald_runtime USING (true) WITH CHECK (true);
CREATE POLICY herald_preferences_runtime ON herald_preferences FOR ALL TO herald_runtime USING (true) WITH CHECK (true);
CREATE POLICY herald_quiet_hours_runtime ON herald_quiet_hours FOR ALL TO herald_runtime USING (true) WITH CHECK (true);
