-- herald 0007: the engine role marks the events it expanded. The in-app insert (as herald_engine)
-- and the events' "processed" marks are one statement, so an expansion batch saves a round trip;
-- the role may read an event's id and set only the two columns the mark writes.
GRANT SELECT (id, processed_at), UPDATE (processed_at, inserted) ON herald_events TO herald_engine;
