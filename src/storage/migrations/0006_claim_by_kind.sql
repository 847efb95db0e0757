-- herald 0006: the batched claim lane takes the oldest due jobs of one kind (event.expand) with an
-- ordered index scan, instead of walking every queued job of other kinds in run_at order (a
-- thousand resumed workflow runs made each claim scan them all).
CREATE INDEX herald_jobs_queued_kind_idx ON herald_jobs (kind, run_at, id) WHERE state = 'queued';
