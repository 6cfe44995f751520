-- 0010_webhooks_usage_notifications: provider seconds per item (cost per store) and NOTIFY when
-- an item or a job reaches a final state (docs/UPSTREAM.md, "Completion notifications").
-- Additive only: upstream SQL of 0001 still works.

-- The provider's ``metrics.predict_time`` of the item's prediction, seconds (what Replicate
-- bills for hardware-priced models); NULL until the prediction is final, or when the provider
-- did not report it.
ALTER TABLE image_optimization_items ADD COLUMN predict_time_seconds double precision;

-- `imageopt usage --store S --since T`: a store's finished items by completion time.
CREATE INDEX image_optimization_items_usage_idx
    ON image_optimization_items (store_id, completed_at)
    WHERE completed_at IS NOT NULL;

-- One notification per item that becomes DONE, FAILED or CANCELED, on channel
-- ``imageopt_item_final``; payload: JSON {"schema", "item_id", "job_id", "store_id", "status"}.
CREATE FUNCTION image_optimization_items_notify_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('imageopt_item_final', json_build_object(
        'schema', TG_TABLE_SCHEMA, 'item_id', NEW.id, 'job_id', NEW.job_id,
        'store_id', left(NEW.store_id, 200), 'status', NEW.status)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER image_optimization_items_notify_final
    AFTER UPDATE OF status ON image_optimization_items
    FOR EACH ROW
    WHEN (NEW.status IN ('DONE', 'FAILED', 'CANCELED') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION image_optimization_items_notify_final();

-- One notification per job that becomes DONE, FAILED or CANCELED (the scheduler's job refresh
-- sets it once every item is final), on channel ``imageopt_job_final``; payload: JSON
-- {"schema", "job_id", "store_id", "status", "total_items", "done_items", "failed_items",
-- "canceled_items"}.
CREATE FUNCTION image_optimization_jobs_notify_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('imageopt_job_final', json_build_object(
        'schema', TG_TABLE_SCHEMA, 'job_id', NEW.id, 'store_id', left(NEW.store_id, 200),
        'status', NEW.status, 'total_items', NEW.total_items, 'done_items', NEW.done_items,
        'failed_items', NEW.failed_items, 'canceled_items', NEW.canceled_items)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER image_optimization_jobs_notify_final
    AFTER UPDATE OF status ON image_optimization_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('DONE', 'FAILED', 'CANCELED') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION image_optimization_jobs_notify_final();

-- Completion callbacks: upstream may give a job a URL that receives a signed POST once the job is
-- final (docs/UPSTREAM.md, "Completion callbacks"). The scheduler leader sends them, with retries.
ALTER TABLE image_optimization_jobs
    ADD COLUMN callback_url text,
    -- NULL until the job is final; then pending -> sent | failed
    ADD COLUMN callback_state text
        CHECK (callback_state IN ('pending', 'sent', 'failed')),
    ADD COLUMN callback_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN callback_next_at timestamptz,
    ADD COLUMN callback_error text;

-- A job that becomes final with a callback URL gets its callback due now (set in the same
-- UPDATE, so no final job is ever missed; a job final again after a retry is called again).
CREATE FUNCTION image_optimization_jobs_callback_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.callback_state := 'pending';
    NEW.callback_attempts := 0;
    NEW.callback_next_at := now();
    NEW.callback_error := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER image_optimization_jobs_callback_due
    BEFORE UPDATE OF status ON image_optimization_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('DONE', 'FAILED', 'CANCELED') AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.callback_url IS NOT NULL)
    EXECUTE FUNCTION image_optimization_jobs_callback_due();

CREATE INDEX image_optimization_jobs_callback_due_idx
    ON image_optimization_jobs (callback_next_at)
    WHERE callback_state = 'pending';
