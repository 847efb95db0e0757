-- herald 0008: a `run` step is recorded as started ('running', its attempt counted) before its
-- body runs, so the execution that follows a crash between a body and the commit of its result
-- (a killed process, a lost lease) is told it is a retry (step.run's `attempt`, docs/WORKFLOWS.md).
--
-- Expand-only (docs/WORKFLOWS.md, "Deploying a new version"): it only widens the states a step row may take.
-- The previous release, still serving while this runs, never writes 'running' and reads such a
-- step as not completed, which it then runs, as it would have anyway. The new check is a superset
-- of the old one, which every existing row satisfies: NOT VALID skips a scan of the table under
-- the lock (new rows are checked all the same). The lock itself is brief (catalog only); a
-- lock_timeout keeps a long transaction of an old process from queueing every step behind it.
SET LOCAL lock_timeout = '5s';
-- expand-only: the check is replaced by a wider one in the same transaction (no moment without it).
ALTER TABLE herald_steps DROP CONSTRAINT herald_steps_state_check;
ALTER TABLE herald_steps ADD CONSTRAINT herald_steps_state_check
  CHECK (state IN ('completed', 'failed', 'waiting', 'running')) NOT VALID;
