-- herald 0005: delivery through email, WhatsApp and webhooks; the attempt log; webhook
-- endpoints; preferences and quiet hours; WhatsApp session windows.

-- One row per effect outside the inbox (an email to a user, a WhatsApp message, a POST to one
-- webhook endpoint). The id is UUIDv7 and doubles as the message's stable identity across retries:
-- the email Message-ID, the webhook-id header. A delivery is never deleted by herald and ends
-- either 'sent' or 'dead' with its reason.
--   queued  -> sending -> sent
--   held    (quiet hours or an open digest window; not_before says until when) -> sending
--   sending -> failed (a transient error; next_attempt_at) -> sending ...
--   sending -> dead (a permanent error, or the last attempt failed); redrive puts it back in queued
CREATE TABLE herald_deliveries (
  id                  uuid PRIMARY KEY,
  event_id            uuid NULL,
  event_type          text NOT NULL,
  channel             text NOT NULL CHECK (channel IN ('email', 'whatsapp', 'webhook')),
  user_id             uuid NULL,
  tenant_id           uuid NULL,
  endpoint_id         uuid NULL,
  destination         text NOT NULL,
  destination_host    text NULL,
  -- The rendered message (subject/html/text, WhatsApp template and text, webhook body); a digest
  -- also keeps the events it collapsed in message.items.
  message             jsonb NOT NULL,
  state               text NOT NULL CHECK (state IN ('queued', 'held', 'sending', 'sent', 'failed', 'dead')),
  held_reason         text NULL,
  not_before          timestamptz NULL,
  digest_key          text NULL,
  digest_count        integer NOT NULL DEFAULT 1,
  attempts            integer NOT NULL DEFAULT 0,
  max_attempts        integer NOT NULL,
  next_attempt_at     timestamptz NULL,
  provider            text NULL,
  provider_message_id text NULL,
  -- The provider's latest status report (WhatsApp: sent, delivered, read, failed).
  provider_status     text NULL,
  last_error          text NULL,
  -- '<event>:<channel>:<user or endpoint>': re-processing an event creates no second delivery.
  dedupe_key          text NOT NULL UNIQUE,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  sent_at             timestamptz NULL,
  dead_at             timestamptz NULL
);
CREATE INDEX herald_deliveries_state_idx ON herald_deliveries (state, created_at DESC);
CREATE INDEX herald_deliveries_event_idx ON herald_deliveries (event_id);
-- At most one open digest per (channel, user, event type or digest name): later events of the
-- window join it through ON CONFLICT on this index.
CREATE UNIQUE INDEX herald_deliveries_open_digest_idx ON herald_deliveries (digest_key)
  WHERE state = 'held' AND digest_key IS NOT NULL;
CREATE INDEX herald_deliveries_provider_id_idx ON herald_deliveries (provider, provider_message_id)
  WHERE provider_message_id IS NOT NULL;
-- The per-recipient rate limit counts what was sent to a user on a channel recently.
CREATE INDEX herald_deliveries_recipient_sent_idx ON herald_deliveries (user_id, channel, sent_at)
  WHERE sent_at IS NOT NULL;

-- Every attempt, with what the provider answered. An attempt without finished_at whose delivery
-- was picked up again belonged to a worker that died mid-send ('lost').
CREATE TABLE herald_delivery_attempts (
  delivery_id uuid NOT NULL REFERENCES herald_deliveries (id) ON DELETE CASCADE,
  attempt     integer NOT NULL,
  host        text NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz NULL,
  outcome     text NULL CHECK (outcome IN ('sent', 'transient', 'permanent', 'lost')),
  response    text NULL,
  error       text NULL,
  PRIMARY KEY (delivery_id, attempt)
);
-- The per-host rate limit counts recent attempts to a host.
CREATE INDEX herald_delivery_attempts_host_idx ON herald_delivery_attempts (host, started_at) WHERE host IS NOT NULL;

-- Status reports from providers (WhatsApp's sent / delivered / read / failed), in arrival order.
CREATE TABLE herald_delivery_statuses (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id uuid NOT NULL REFERENCES herald_deliveries (id) ON DELETE CASCADE,
  status      text NOT NULL,
  reported_at timestamptz NULL,
  detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_delivery_statuses_delivery_idx ON herald_delivery_statuses (delivery_id, id);

-- Webhook subscriptions. tenant_id NULL receives every tenant's events; event_types NULL every
-- type whose rule has a webhook effect. A 410 Gone from the receiver disables the endpoint.
CREATE TABLE herald_webhook_endpoints (
  id              uuid PRIMARY KEY,
  tenant_id       uuid NULL,
  url             text NOT NULL,
  secret          text NOT NULL,
  event_types     text[] NULL,
  description     text NULL,
  disabled_at     timestamptz NULL,
  disabled_reason text NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A user's choices per channel ('*' = every channel) and scope ('*', an event type, or
-- 'category:<name>'). The most specific row wins; no row means enabled.
CREATE TABLE herald_preferences (
  user_id    uuid NOT NULL,
  channel    text NOT NULL CHECK (channel IN ('*', 'in_app', 'email', 'whatsapp')),
  scope      text NOT NULL,
  enabled    boolean NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, channel, scope)
);

-- Quiet hours in the user's local time; a window may cross midnight (22:00-07:00). timezone NULL
-- means the directory's time zone for the user, else UTC.
CREATE TABLE herald_quiet_hours (
  user_id    uuid PRIMARY KEY,
  starts     time NOT NULL,
  ends       time NOT NULL,
  timezone   text NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (starts <> ends)
);

-- Every table keyed by user_id is under RLS with FORCE, like notifications: nothing reads it
-- without a policy that says so. The end-user API changes preferences as herald_user, each user
-- only their own rows. The engine (the role that ran this migration and owns the tables) reads
-- and writes all of them through an explicit policy; herald_user has no grant and no policy on
-- deliveries at all.
ALTER TABLE herald_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE herald_deliveries FORCE ROW LEVEL SECURITY;
ALTER TABLE herald_preferences ENABLE ROW LEVEL SECURITY;
ALTER TABLE herald_preferences FORCE ROW LEVEL SECURITY;
ALTER TABLE herald_quiet_hours ENABLE ROW LEVEL SECURITY;
ALTER TABLE herald_quiet_hours FORCE ROW LEVEL SECURITY;
REVOKE ALL ON herald_deliveries, herald_preferences, herald_quiet_hours FROM PUBLIC;
CREATE POLICY herald_deliveries_engine ON herald_deliveries FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY herald_preferences_engine ON herald_preferences FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY herald_quiet_hours_engine ON herald_quiet_hours FOR ALL TO CURRENT_USER USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON herald_preferences, herald_quiet_hours TO herald_user;
CREATE POLICY herald_preferences_own ON herald_preferences FOR ALL TO herald_user
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY herald_quiet_hours_own ON herald_quiet_hours FOR ALL TO herald_user
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

-- WhatsApp's customer-service window: free text may be sent for 24 h after the user last wrote.
CREATE TABLE herald_whatsapp_sessions (
  phone           text PRIMARY KEY,
  last_inbound_at timestamptz NOT NULL
);
