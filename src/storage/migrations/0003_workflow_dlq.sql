-- herald 0003: the dead-letter list of HTTP workflows. A run whose delivery failed for good
-- (retries exhausted, or a non-retryable answer) leaves an entry with the endpoint's last answer;
-- `resume` starts a new run from the failed step, `restart` a new run from the beginning.
CREATE TABLE herald_dlq (
  id               text PRIMARY KEY,                  -- dlq_<random>
  run_id           text NOT NULL REFERENCES herald_runs (id) ON DELETE CASCADE,
  message_id       text NOT NULL,                     -- the message whose delivery failed
  url              text NOT NULL,
  response_status  integer NOT NULL,                  -- 0: no response (network error)
  response_headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  response_body    bytea NULL,
  error            text NOT NULL,
  failure_callback text NULL,                         -- the failure URL, if the run had one
  failure_callback_state text NULL CHECK (failure_callback_state IN ('pending', 'delivered', 'failed')),
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_dlq_created_idx ON herald_dlq (created_at DESC, id DESC);
CREATE INDEX herald_dlq_run_idx ON herald_dlq (run_id);
