-- herald 0001: roles, the notifications inbox under Row Level Security, the recipient directory,
-- events, idempotency keys and the job queue.

-- Roles are cluster-wide and may already exist (another database, another herald, a concurrent
-- migration in a sibling database), so creation tolerates "already exists".
--   herald_user   : an end user's request. SET LOCAL ROLE herald_user + request.jwt.claims per tx.
--   herald_engine : the engine writing inbox rows. Never used for end-user requests.
-- Neither can log in; the connecting role switches to them with SET LOCAL ROLE inside a transaction.
-- A role that exists is left alone without trying CREATE ROLE: Postgres checks CREATEROLE before
-- it checks existence, so an owner without CREATEROLE (the roles made once by a DBA, see
-- docs/DEPLOYMENT.md) would otherwise fail here.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'herald_user') THEN
    BEGIN CREATE ROLE herald_user NOLOGIN NOBYPASSRLS NOSUPERUSER;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'herald_engine') THEN
    BEGIN CREATE ROLE herald_engine NOLOGIN NOBYPASSRLS NOSUPERUSER;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
  END IF;
  -- The connecting role must be a member to SET ROLE; a superuser needs no grant.
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    BEGIN EXECUTE format('GRANT herald_user, herald_engine TO %I', current_user);
    EXCEPTION WHEN others THEN NULL; END;
  END IF;
END $$;

-- Supabase's convention: auth.uid() reads the JWT subject from request.jwt.claims (or the older
-- request.jwt.claim.sub). After a SET LOCAL transaction ends, current_setting(..., true) returns ''
-- rather than NULL on that connection, hence nullif: a reused connection yields NULL, never a cast
-- error and never a match. On Supabase auth.uid() already exists and is left alone.
CREATE SCHEMA IF NOT EXISTS auth;
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'auth' AND p.proname = 'uid'
  ) THEN
    CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
      SELECT nullif(coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
      ), '')::uuid
    $f$;
  END IF;
END $$;
GRANT USAGE ON SCHEMA auth TO herald_user, herald_engine;
GRANT EXECUTE ON FUNCTION auth.uid() TO herald_user, herald_engine;

-- The seed's table, with exactly its columns and types; herald adds seen/archived state and the
-- event link and dedupe key that make re-processing an event a no-op.
CREATE TABLE notifications (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL,
  tenant_id   uuid NULL,
  title       text NOT NULL,
  body        text NULL,
  type        text NOT NULL,
  action_url  text NULL,
  data        jsonb NOT NULL DEFAULT '{}'::jsonb,
  read_at     timestamptz NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  seen_at     timestamptz NULL,
  archived_at timestamptz NULL,
  event_id    uuid NULL,
  dedupe_key  text NULL UNIQUE
);
-- Leading user_id: the RLS predicate and the inbox query both use it. Ids are UUIDv7, so
-- (created_at, id) is a stable keyset for pagination.
CREATE INDEX notifications_inbox_idx ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id, created_at DESC)
  WHERE read_at IS NULL AND archived_at IS NULL;

ALTER TABLE notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifications FORCE ROW LEVEL SECURITY;

REVOKE ALL ON notifications FROM PUBLIC;
GRANT SELECT, DELETE ON notifications TO herald_user;
-- Column privilege: a user can change only the state columns of their own rows. RLS cannot
-- restrict columns; this grant does (an UPDATE of title or user_id fails with 42501).
GRANT UPDATE (read_at, seen_at, archived_at) ON notifications TO herald_user;
-- The engine inserts (ON CONFLICT needs SELECT to find the conflicting row).
GRANT SELECT, INSERT ON notifications TO herald_engine;

-- (SELECT auth.uid()) is evaluated once per statement (an InitPlan), not once per row.
CREATE POLICY notifications_user_select ON notifications FOR SELECT TO herald_user
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY notifications_user_update ON notifications FOR UPDATE TO herald_user
  USING (user_id = (SELECT auth.uid()))
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY notifications_user_delete ON notifications FOR DELETE TO herald_user
  USING (user_id = (SELECT auth.uid()));
-- No INSERT policy for herald_user: users never create notifications.
-- Memberships inherit on PG 15, so the connecting role (a member of herald_engine) would match an
-- engine policy even without SET ROLE. The engine's policies therefore also require the
-- transaction-local flag herald.actor = 'engine' that the engine path sets next to its role: a
-- code path that forgets to switch role reads nothing instead of every inbox.
CREATE POLICY notifications_engine_select ON notifications FOR SELECT TO herald_engine
  USING (current_setting('herald.actor', true) = 'engine');
CREATE POLICY notifications_engine_insert ON notifications FOR INSERT TO herald_engine
  WITH CHECK (current_setting('herald.actor', true) = 'engine');

-- Recipient directory, synced server-to-server through PUT /api/users/{id}.
CREATE TABLE herald_users (
  id         uuid PRIMARY KEY,
  tenant_id  uuid NOT NULL,
  email      text NULL,
  phone      text NULL,
  locale     text NULL,
  timezone   text NULL,
  name       text NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_users_tenant_idx ON herald_users (tenant_id, id);

-- Every accepted emit, as received.
CREATE TABLE herald_events (
  id           uuid PRIMARY KEY,
  type         text NOT NULL,
  ctx          jsonb NOT NULL,
  tenant_id    uuid NULL,
  mode         text NOT NULL CHECK (mode IN ('workflow', 'direct')),
  received_at  timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz NULL,
  inserted     integer NULL
);
CREATE INDEX herald_events_received_idx ON herald_events (received_at);

-- Idempotency keys for emit (Idempotency-Key, webhook-id, or the hash of a legacy-signed body).
-- 'pending' while the first request is in flight (a concurrent duplicate gets 409); 'done' stores
-- the first response, which later duplicates with the same body replay.
CREATE TABLE herald_idempotency_keys (
  key         text PRIMARY KEY,
  body_sha256 text NOT NULL,
  state       text NOT NULL CHECK (state IN ('pending', 'done')),
  status      integer NULL,
  response    json NULL,   -- json, not jsonb: a replay returns the first response byte for byte
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_idempotency_keys_created_idx ON herald_idempotency_keys (created_at);

-- The job queue. Claimed with FOR UPDATE SKIP LOCKED under a lease; every write-back is fenced by
-- (locked_by, attempts), so a worker whose lease expired cannot commit.
CREATE TABLE herald_jobs (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind         text NOT NULL,
  payload      jsonb NOT NULL,
  state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'failed')),
  run_at       timestamptz NOT NULL DEFAULT now(),
  attempts     integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 20,
  locked_by    text NULL,
  locked_until timestamptz NULL,
  last_error   text NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_jobs_queued_idx ON herald_jobs (run_at, id) WHERE state = 'queued';
CREATE INDEX herald_jobs_running_idx ON herald_jobs (locked_until) WHERE state = 'running';
