-- 0003_scheduling: the index behind the scheduler's incremental job refresh.
-- Job counters follow their items: every couple of seconds the leader recounts only the active
-- jobs that have an item changed recently (query refresh_recent_jobs), found through this
-- index by updated_at without touching the table (index-only). See docs/SCHEDULING.md.

CREATE INDEX image_optimization_items_updated_idx
    ON image_optimization_items (updated_at, job_id);
