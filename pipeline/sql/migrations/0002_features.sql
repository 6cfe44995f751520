-- 0002_features: the seeds' image features: output presets per store and per item,
-- per-store daily quotas, retention bookkeeping. Additive only: upstream SQL of 0001 still works.

-- Custom output presets, one set per store (built-in presets live in pipeline/presets.py and
-- are not stored). The spec is validated by pipeline/presets.py before insert; the CHECKs below
-- are the last line of defence for rows inserted by hand.
CREATE TABLE image_optimization_presets (
    store_id    text NOT NULL CHECK (btrim(store_id) <> ''),
    name        text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    spec        jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, name)
);

-- An item may override its job's preset (NULL: the job's).
ALTER TABLE image_optimization_items ADD COLUMN preset text;

-- Retention: when the input / result object was deleted (the key stays for the record).
ALTER TABLE image_optimization_items
    ADD COLUMN input_deleted_at timestamptz,
    ADD COLUMN output_deleted_at timestamptz;

-- Per-store limit of items started per rolling 24 h (NULL: IMAGEOPT_DEFAULT_DAILY_ITEM_QUOTA).
ALTER TABLE image_optimization_stores
    ADD COLUMN daily_item_quota integer CHECK (daily_item_quota IS NULL OR daily_item_quota >= 1);

-- Quota usage: items of a store started (queued) within the window.
CREATE INDEX image_optimization_items_quota_idx
    ON image_optimization_items (store_id, queued_at)
    WHERE queued_at IS NOT NULL;

-- Retention scans: finished items by completion time, finished jobs by completion time.
CREATE INDEX image_optimization_items_completed_idx
    ON image_optimization_items (completed_at)
    WHERE completed_at IS NOT NULL;

CREATE INDEX image_optimization_jobs_completed_idx
    ON image_optimization_jobs (completed_at)
    WHERE status IN ('DONE', 'FAILED', 'CANCELED');
