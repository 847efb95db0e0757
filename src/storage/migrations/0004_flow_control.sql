-- herald 0004: flow control of HTTP workflow deliveries (Upstash-Flow-Control-Key/Value).
-- parallelism: at most N deliveries of a key in flight; a slot is a row held by one delivery
-- until it ends or its lease runs out. rate: at most R delivery starts per period window.
CREATE TABLE herald_flow_slots (
  key        text NOT NULL,
  slot       integer NOT NULL,
  holder     text NULL,
  held_until timestamptz NULL,
  PRIMARY KEY (key, slot)
);

CREATE TABLE herald_flow_windows (
  key          text NOT NULL,
  window_start timestamptz NOT NULL,
  started      integer NOT NULL DEFAULT 0,
  PRIMARY KEY (key, window_start)
);
