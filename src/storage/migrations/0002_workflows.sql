-- herald 0002: durable workflows. Runs, their recorded steps, waiters and run-scoped events kept
-- for lookback. The model serves both code-first workflows (herald.config.ts) and HTTP workflows
-- driven over the QStash protocol (kind = 'http'), so notify and the admin API see one kind of run.

-- Job debounce keys: at most one queued job per key, and the claim skips a key that is running.
ALTER TABLE herald_jobs ADD COLUMN key text NULL;
CREATE UNIQUE INDEX herald_jobs_queued_key_idx ON herald_jobs (key) WHERE state = 'queued';
CREATE INDEX herald_jobs_running_key_idx ON herald_jobs (key) WHERE state = 'running';

CREATE TABLE herald_runs (
  id          text PRIMARY KEY,                      -- wfr_<random>, as Upstash Workflow
  kind        text NOT NULL CHECK (kind IN ('code', 'http')),
  workflow    text NOT NULL,                         -- code: the workflow's name; http: its URL
  state       text NOT NULL DEFAULT 'running'
                CHECK (state IN ('running', 'completed', 'failed', 'cancelled')),
  input       jsonb NULL,                            -- code: the input (an event's ctx)
  input_bytes bytea NULL,                            -- http: the initial body, byte for byte
  config      jsonb NOT NULL DEFAULT '{}'::jsonb,    -- http: retries, failure URL, forwarded headers…
  max_attempts integer NOT NULL DEFAULT 4,           -- per execution, before the run fails
  result      jsonb NULL,
  error       text NULL,
  event_id    uuid NULL,                             -- the emit that started it, if any
  tenant_id   uuid NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz NULL
);
CREATE INDEX herald_runs_state_idx ON herald_runs (state, created_at DESC);
CREATE INDEX herald_runs_workflow_idx ON herald_runs (workflow, created_at DESC);

-- One row per step of a run. A result is recorded exactly once: (run_id, step_id) is the key and
-- writers use ON CONFLICT DO NOTHING under a fenced job lease.
CREATE TABLE herald_steps (
  run_id       text NOT NULL REFERENCES herald_runs (id) ON DELETE CASCADE,
  step_id      text NOT NULL,
  seq          bigint GENERATED ALWAYS AS IDENTITY,
  type         text NOT NULL,                        -- run, sleep, wait, notify, send
  state        text NOT NULL CHECK (state IN ('completed', 'failed', 'waiting')),
  output       jsonb NULL,                           -- JSON result (run, notify, send; wait metadata)
  output_bytes bytea NULL,                           -- wait: the notify body, byte for byte
  content_type text NULL,
  wake_at      timestamptz NULL,                     -- sleep: when it is due (database clock)
  attempts     integer NOT NULL DEFAULT 0,
  error        text NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz NULL,
  PRIMARY KEY (run_id, step_id)
);

-- An active wait. Removing the row is how a waiter is resumed (by a notify or by its timeout):
-- DELETE … RETURNING has exactly one winner.
CREATE TABLE herald_waiters (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id          text NOT NULL REFERENCES herald_runs (id) ON DELETE CASCADE,
  step_id         text NOT NULL,
  event_id        text NOT NULL,
  url             text NOT NULL,
  headers         jsonb NOT NULL DEFAULT '{}'::jsonb,   -- Record<string, string[]>
  deadline_at     timestamptz NOT NULL,
  timeout         text NULL,                            -- as given, e.g. "30s"
  timeout_url     text NULL,
  timeout_body    bytea NULL,
  timeout_headers jsonb NULL,
  step            jsonb NULL,                           -- http: the SDK's step, echoed on resume
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (run_id, step_id)
);
CREATE INDEX herald_waiters_event_idx ON herald_waiters (event_id, id);
CREATE INDEX herald_waiters_deadline_idx ON herald_waiters (deadline_at);

-- Run-scoped notifies that found no waiter yet ("lookback"): consumed by the run's next wait on
-- that event id, for as long as the run lives.
CREATE TABLE herald_run_events (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id       text NOT NULL REFERENCES herald_runs (id) ON DELETE CASCADE,
  event_id     text NOT NULL,
  body         bytea NOT NULL,
  content_type text NULL,
  message_id   text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_run_events_lookup_idx ON herald_run_events (run_id, event_id, id);
