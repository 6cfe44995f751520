-- Every SQL statement of the pipeline, one block per query, headed "-- name: <name>" and a
-- one-line description. Placeholders are psycopg's %(name)s. Only pipeline/repository.py runs them.
-- Every state change is conditional on the expected status, so running it twice is harmless.

-- name: count_in_flight
-- Items handed to the queue and not yet submitted (the metered window).
SELECT count(*) AS n
FROM image_optimization_items
WHERE status IN ('QUEUED', 'SUBMITTING');

-- name: pending_stores
-- Stores with PENDING items, by a loose index scan (one probe per store), with their weights;
-- paused stores (image_optimization_stores.paused) are left out.
WITH RECURSIVE s(store_id) AS (
    (SELECT store_id FROM image_optimization_items
     WHERE status = 'PENDING' ORDER BY store_id LIMIT 1)
    UNION ALL
    SELECT (SELECT i.store_id FROM image_optimization_items i
            WHERE i.status = 'PENDING' AND i.store_id > s.store_id
            ORDER BY i.store_id LIMIT 1)
    FROM s WHERE s.store_id IS NOT NULL
)
SELECT s.store_id, coalesce(w.weight, 1) AS weight
FROM s LEFT JOIN image_optimization_stores w USING (store_id)
WHERE s.store_id IS NOT NULL AND NOT coalesce(w.paused, false);

-- name: pending_stores_after
-- Up to %(limit)s unpaused stores with PENDING items whose id sorts after %(cursor)s ('' = from
-- the start), with their weights: a loose index scan that stops after %(limit)s unpaused
-- stores, so a tick costs O(capacity + paused stores), not O(stores with a backlog). A paused
-- store is stepped over without counting (its items stay PENDING), so paused stores can never
-- use up a pass's probes and stall the rotation. The empty store id sorts first and is not
-- "after" '', so it gets its own probe (its items must still be metered, to fail validation).
WITH RECURSIVE s(store_id, n) AS (
    (SELECT first.store_id, 0 FROM (
        (SELECT store_id FROM image_optimization_items
         WHERE status = 'PENDING' AND store_id = '' AND %(cursor)s = '' LIMIT 1)
        UNION ALL
        (SELECT store_id FROM image_optimization_items
         WHERE status = 'PENDING' AND store_id > %(cursor)s ORDER BY store_id LIMIT 1)
     ) AS first ORDER BY first.store_id LIMIT 1)
    UNION ALL
    SELECT (SELECT i.store_id FROM image_optimization_items i
            WHERE i.status = 'PENDING' AND i.store_id > s.store_id
            ORDER BY i.store_id LIMIT 1),
           s.n + CASE WHEN EXISTS (SELECT 1 FROM image_optimization_stores p
                                   WHERE p.store_id = s.store_id AND p.paused)
                      THEN 0 ELSE 1 END
    FROM s WHERE s.store_id IS NOT NULL
      AND s.n + CASE WHEN EXISTS (SELECT 1 FROM image_optimization_stores p
                                  WHERE p.store_id = s.store_id AND p.paused)
                     THEN 0 ELSE 1 END < %(limit)s
)
SELECT s.store_id, coalesce(w.weight, 1) AS weight
FROM s LEFT JOIN image_optimization_stores w USING (store_id)
WHERE s.store_id IS NOT NULL AND NOT coalesce(w.paused, false)
ORDER BY s.store_id;

-- name: pending_heads
-- The first %(per_store)s due PENDING items of each given store: priority first, then age;
-- model, prompt and params as the item overrides its job (image_optimization_item_settings).
SELECT h.id, h.job_id, h.store_id, h.source_url, h.priority, h.created_at,
       e.model, e.prompt, e.params
FROM unnest(%(store_ids)s::text[]) AS s(store_id)
CROSS JOIN LATERAL (
    SELECT i.* FROM image_optimization_items i
    WHERE i.store_id = s.store_id AND i.status = 'PENDING'
      AND (i.next_attempt_at IS NULL OR i.next_attempt_at <= %(now)s)
    ORDER BY i.priority DESC, i.created_at, i.id
    LIMIT %(per_store)s
) h
JOIN image_optimization_item_settings e ON e.item_id = h.id;

-- name: mark_queued
-- PENDING -> QUEUED for the selected items; returns the ones this call moved.
UPDATE image_optimization_items
SET status = 'QUEUED', queued_at = now(), updated_at = now()
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'PENDING'
RETURNING id;

-- name: fail_pending_many
-- PENDING -> FAILED for items that fail validation before any work (row-level errors).
UPDATE image_optimization_items i
SET status = 'FAILED', error_code = f.code, error_message = f.message,
    completed_at = now(), updated_at = now()
FROM unnest(%(ids)s::bigint[], %(codes)s::text[], %(messages)s::text[]) AS f(id, code, message)
WHERE i.id = f.id AND i.status = 'PENDING'
RETURNING i.id;

-- name: get_work_item
-- One item with the job's defaults folded in (model, prompt, params, preset: the item
-- overrides its job, image_optimization_item_settings).
SELECT i.id, i.job_id, i.store_id, i.source_url, i.status, i.attempts, i.priority,
       i.prediction_id, i.input_key, i.poll_count, i.created_at, i.submitted_at,
       e.model, e.prompt, e.params, e.preset
FROM image_optimization_items i
JOIN image_optimization_item_settings e ON e.item_id = i.id
WHERE i.id = %(id)s;

-- name: record_input
-- Remember where the normalized input was stored (by the worker that holds the SUBMITTING
-- claim; the rescuer finds a dead worker's prediction by this key's URL).
UPDATE image_optimization_items
SET input_key = %(input_key)s, updated_at = now()
WHERE id = %(id)s AND status IN ('QUEUED', 'SUBMITTING')
RETURNING id;

-- name: claim_work_item
-- QUEUED -> SUBMITTING (attempts + 1; one worker only) returning the row as get_work_item reads it:
-- one round trip instead of two for the creation worker.
WITH claimed AS (
    UPDATE image_optimization_items
    SET status = 'SUBMITTING', attempts = attempts + 1, updated_at = now()
    WHERE id = %(id)s AND status = 'QUEUED'
    RETURNING *
)
-- The settings come from the view, which sees the row as it was before this UPDATE: the
-- claim changes status and attempts only, which are read from ``claimed``.
SELECT i.id, i.job_id, i.store_id, i.source_url, i.status, i.attempts, i.priority,
       i.prediction_id, i.input_key, i.poll_count, i.created_at, i.submitted_at,
       e.model, e.prompt, e.params, e.preset
FROM claimed i
JOIN image_optimization_item_settings e ON e.item_id = i.id;

-- name: mark_processing
-- SUBMITTING -> PROCESSING with the provider's prediction id, in one step.
UPDATE image_optimization_items
SET status = 'PROCESSING', prediction_id = %(prediction_id)s, submitted_at = now(),
    last_polled_at = now(), error_code = NULL, error_message = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'SUBMITTING'
RETURNING id;

-- name: release_submission
-- SUBMITTING -> PENDING when the provider refused before creating anything (429): the
-- attempt is given back and the item waits for the scheduler after %(delay_seconds)s.
UPDATE image_optimization_items
SET status = 'PENDING', attempts = greatest(attempts - 1, 0),
    next_attempt_at = now() + make_interval(secs => %(delay_seconds)s),
    error_code = %(code)s, error_message = %(message)s, updated_at = now()
WHERE id = %(id)s AND status = 'SUBMITTING'
RETURNING id;

-- name: retry_later
-- A transient failure: back to PENDING, due again after a backoff of %(delay_seconds)s.
UPDATE image_optimization_items
SET status = 'PENDING', next_attempt_at = now() + make_interval(secs => %(delay_seconds)s),
    prediction_id = NULL, error_code = %(code)s, error_message = %(message)s, updated_at = now()
WHERE id = %(id)s AND status = ANY(%(from_statuses)s::text[])
RETURNING id;

-- name: fail_item
-- A permanent failure (or the last attempt): FAILED with its error code, a dead letter.
UPDATE image_optimization_items
SET status = 'FAILED', error_code = %(code)s, error_message = %(message)s,
    completed_at = now(), updated_at = now()
WHERE id = %(id)s AND status = ANY(%(from_statuses)s::text[])
RETURNING id;

-- name: record_poll
-- Count a poll of a PROCESSING item (the rescuer looks for items not polled recently).
UPDATE image_optimization_items
SET poll_count = poll_count + 1, last_polled_at = now(), updated_at = now()
WHERE id = %(id)s AND status = 'PROCESSING'
RETURNING poll_count;

-- name: mark_done
-- PROCESSING -> DONE with the stored result; counts the poll that saw it succeed (polls = 1;
-- the polling worker does not run record_poll for that poll: one statement less per item), or
-- none (polls = 0) when the create's own answer was already final (sync mode).
UPDATE image_optimization_items
SET status = 'DONE', output_key = %(output_key)s, output_width = %(width)s,
    output_height = %(height)s, output_bytes = %(bytes)s,
    output_content_type = %(content_type)s, error_code = NULL, error_message = NULL,
    poll_count = poll_count + %(polls)s, last_polled_at = now(),
    predict_time_seconds = %(predict_time)s, completed_at = now(), updated_at = now()
WHERE id = %(id)s AND status = 'PROCESSING'
RETURNING id;

-- name: record_predict_time
-- The provider seconds of an item's prediction that ended without a result (failed, canceled):
-- billed all the same (`imageopt usage`). Only for the prediction the row still holds.
UPDATE image_optimization_items
SET predict_time_seconds = %(predict_time)s
WHERE id = %(id)s AND prediction_id = %(prediction_id)s
RETURNING id;

-- name: usage_by_model
-- A store's predictions that ended at or after %(since)s, by model: how many, how many of them
-- reported their provider seconds, and those seconds (`imageopt usage`).
SELECT coalesce(i.model, j.model) AS model,
       count(*)::bigint AS predictions,
       count(i.predict_time_seconds)::bigint AS timed,
       coalesce(sum(i.predict_time_seconds), 0)::double precision AS predict_seconds
FROM image_optimization_items i
JOIN image_optimization_jobs j ON j.id = i.job_id
WHERE i.store_id = %(store_id)s AND i.completed_at >= %(since)s
  AND i.prediction_id IS NOT NULL
GROUP BY 1
ORDER BY 1;

-- name: active_job_ids
-- Jobs not yet final (their counters may still change).
SELECT id FROM image_optimization_jobs WHERE status IN ('PENDING', 'PROCESSING');

-- name: recent_active_job_ids
-- Active jobs with an item changed since %(since)s (a literal time, so the planner sees how few
-- rows qualify), found index-only via (updated_at, job_id).
SELECT DISTINCT t.job_id AS id
FROM image_optimization_items t
JOIN image_optimization_jobs aj ON aj.id = t.job_id
WHERE t.updated_at >= %(since)s::timestamptz
  AND aj.status IN ('PENDING', 'PROCESSING');

-- name: refresh_jobs
-- Counters and status of the given jobs follow their items (index-only count per job over
-- (job_id, status)); writes only jobs whose figures changed and returns them.
WITH counts AS (
    SELECT a.job_id, c.total, c.done, c.failed, c.canceled,
           CASE
               WHEN c.done + c.failed + c.canceled < c.total THEN
                    CASE WHEN c.started > 0 THEN 'PROCESSING' ELSE 'PENDING' END
               WHEN c.done > 0 THEN 'DONE'
               WHEN c.failed > 0 THEN 'FAILED'
               ELSE 'CANCELED'
           END AS status
    FROM unnest(%(ids)s::bigint[]) AS a(job_id)
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS total,
               (count(*) FILTER (WHERE i.status = 'DONE'))::int AS done,
               (count(*) FILTER (WHERE i.status = 'FAILED'))::int AS failed,
               (count(*) FILTER (WHERE i.status = 'CANCELED'))::int AS canceled,
               count(*) FILTER (WHERE i.status <> 'PENDING') AS started
        FROM image_optimization_items i
        WHERE i.job_id = a.job_id
    ) c
    WHERE c.total > 0  -- a job whose items are not inserted yet keeps its status
)
UPDATE image_optimization_jobs j
SET total_items = c.total, done_items = c.done, failed_items = c.failed,
    canceled_items = c.canceled, status = c.status,
    completed_at = CASE WHEN c.done + c.failed + c.canceled = c.total THEN now() END,
    updated_at = now()
FROM counts c
WHERE j.id = c.job_id
  AND (j.total_items, j.done_items, j.failed_items, j.canceled_items, j.status)
      IS DISTINCT FROM (c.total, c.done, c.failed, c.canceled, c.status)
RETURNING j.id, j.status;

-- name: insert_job
-- A new job for one store (what upstream systems do; the CLI's submit does the same).
INSERT INTO image_optimization_jobs (store_id, model, prompt, params, preset)
VALUES (%(store_id)s, %(model)s, %(prompt)s, %(params)s, %(preset)s)
RETURNING id;

-- name: insert_item
-- One item of a job (status PENDING by default; the insert trigger NOTIFYs the scheduler).
INSERT INTO image_optimization_items (job_id, store_id, source_url, prompt, model, params, priority,
                                      preset)
VALUES (%(job_id)s, %(store_id)s, %(source_url)s, %(prompt)s, %(model)s, %(params)s, %(priority)s,
        %(preset)s);

-- name: status_counts
-- Items by status, per store and per job (the seeds' distribution query, grouped).
SELECT i.store_id, i.job_id, i.status, count(*) AS n
FROM image_optimization_items i
WHERE (%(job_id)s::bigint IS NULL OR i.job_id = %(job_id)s::bigint)
  AND (%(store_id)s::text IS NULL OR i.store_id = %(store_id)s::text)
GROUP BY i.store_id, i.job_id, i.status
ORDER BY i.store_id, i.job_id, i.status;

-- name: error_counts
-- FAILED items by error code, per store.
SELECT store_id, error_code, count(*) AS n
FROM image_optimization_items
WHERE status = 'FAILED'
  AND (%(job_id)s::bigint IS NULL OR job_id = %(job_id)s::bigint)
GROUP BY store_id, error_code
ORDER BY store_id, error_code;

-- name: job_summary
-- Per job: counters, timing and throughput inputs for the demo summary.
SELECT j.id, j.store_id, j.model, j.status, j.created_at,
       count(i.id) AS total,
       count(*) FILTER (WHERE i.status = 'DONE') AS done,
       count(*) FILTER (WHERE i.status = 'FAILED') AS failed,
       count(*) FILTER (WHERE i.status = 'CANCELED') AS canceled,
       max(i.completed_at) AS last_completed_at
FROM image_optimization_jobs j
LEFT JOIN image_optimization_items i ON i.job_id = j.id
WHERE j.id = ANY(%(job_ids)s::bigint[])
GROUP BY j.id
ORDER BY j.id;

-- name: job_items
-- The items of one job, for results listings.
SELECT id, store_id, source_url, status, error_code, error_message, output_key,
       output_width, output_height, output_bytes, output_content_type, attempts,
       created_at, completed_at
FROM image_optimization_items
WHERE job_id = %(job_id)s
ORDER BY id;

-- name: stale_queued
-- QUEUED items whose message may be gone (nothing happened for %(older_than)s seconds).
SELECT id FROM image_optimization_items
WHERE status = 'QUEUED' AND updated_at < %(now)s - make_interval(secs => %(older_than)s)
ORDER BY updated_at
LIMIT %(limit)s;

-- name: touch_queued
-- Re-enqueued QUEUED items restart their staleness clock.
UPDATE image_optimization_items
SET updated_at = now()
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'QUEUED'
RETURNING id;

-- name: stale_submitting
-- SUBMITTING items whose worker died half-way (no progress for %(older_than)s seconds).
SELECT id, input_key, updated_at FROM image_optimization_items
WHERE status = 'SUBMITTING' AND updated_at < %(now)s - make_interval(secs => %(older_than)s)
ORDER BY updated_at
LIMIT %(limit)s;

-- name: adopt_prediction
-- SUBMITTING -> PROCESSING when the rescuer found the prediction the dead worker created.
UPDATE image_optimization_items
SET status = 'PROCESSING', prediction_id = %(prediction_id)s, submitted_at = now(),
    last_polled_at = now(), updated_at = now()
WHERE id = %(id)s AND status = 'SUBMITTING'
RETURNING id;

-- name: requeue_submitting
-- SUBMITTING -> QUEUED when the provider shows no prediction for it (safe to submit again).
UPDATE image_optimization_items
SET status = 'QUEUED', updated_at = now()
WHERE id = %(id)s AND status = 'SUBMITTING'
RETURNING id;

-- name: stale_processing
-- PROCESSING items not polled for %(older_than)s seconds (their poll message may be gone).
SELECT id FROM image_optimization_items
WHERE status = 'PROCESSING'
  AND coalesce(last_polled_at, updated_at) < %(now)s - make_interval(secs => %(older_than)s)
ORDER BY last_polled_at NULLS FIRST
LIMIT %(limit)s;

-- name: overdue_webhooks
-- With webhooks on: PROCESSING items not polled yet whose webhook is overdue, i.e. nothing was
-- sent to them for their model's wait (the item's or its job's model: %(models)s / %(waits)s
-- seconds; any other model %(default_wait)s): last_polled_at is the PROCESSING time until the
-- rescuer's poll (touch_repolled) or a real poll (poll_count) moves it.
-- updated_at <= last_polled_at here, so %(due_before)s (now - the shortest wait) bounds
-- updated_at: a range of the active index.
SELECT i.id FROM image_optimization_items AS i
JOIN image_optimization_jobs AS j ON j.id = i.job_id
LEFT JOIN unnest(%(models)s::text[], %(waits)s::float8[]) AS w (model, wait)
  ON w.model = coalesce(i.model, j.model)
WHERE i.status = 'PROCESSING' AND i.poll_count = 0
  AND i.updated_at < %(due_before)s
  AND i.last_polled_at < %(now)s - make_interval(secs => coalesce(w.wait, %(default_wait)s))
ORDER BY i.updated_at
LIMIT %(limit)s;

-- name: touch_repolled
-- PROCESSING items the rescuer sent a poll for restart their staleness clock (so a second
-- rescuer pass does not send another poll; the poll itself records the real poll).
UPDATE image_optimization_items
SET last_polled_at = now()
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'PROCESSING'
RETURNING id;

-- name: expired_items
-- Non-final items older than the maximum age.
SELECT id, status, prediction_id FROM image_optimization_items
WHERE status IN ('QUEUED', 'SUBMITTING', 'PROCESSING')
  AND created_at < %(now)s - make_interval(secs => %(max_age)s)
ORDER BY created_at
LIMIT %(limit)s;

-- name: cancel_job_items
-- Cancel every not-yet-final item of a job (PROCESSING ones are canceled at the provider too).
UPDATE image_optimization_items
SET status = 'CANCELED', error_code = 'canceled', error_message = 'canceled by request',
    completed_at = now(), updated_at = now()
WHERE job_id = %(job_id)s AND status IN ('PENDING', 'QUEUED', 'SUBMITTING', 'PROCESSING')
RETURNING id, prediction_id;

-- name: retry_failed_items
-- Dead letters back to PENDING (ops' retry): attempts start over. Items whose uploaded source
-- retention deleted (source_deleted_at) stay FAILED: a new attempt could only fail again.
UPDATE image_optimization_items
SET status = 'PENDING', attempts = 0, next_attempt_at = NULL, prediction_id = NULL,
    error_code = NULL, error_message = NULL, completed_at = NULL, input_deleted_at = NULL,
    updated_at = now()
WHERE status = 'FAILED' AND source_deleted_at IS NULL
  AND (%(job_id)s::bigint IS NULL OR job_id = %(job_id)s::bigint)
  AND (%(error_code)s::text IS NULL OR error_code = %(error_code)s::text)
RETURNING id, job_id;

-- name: reopen_jobs
-- Jobs whose items were retried become active again.
UPDATE image_optimization_jobs
SET status = 'PROCESSING', completed_at = NULL, updated_at = now()
WHERE id = ANY(%(ids)s::bigint[])
RETURNING id;

-- name: queue_depths
-- Non-final items by status across all stores (heartbeat and metrics; finished rows cost
-- nothing): PENDING from its partial index, the others from the active-items index.
SELECT 'PENDING' AS status, count(*) AS n FROM image_optimization_items
WHERE status = 'PENDING'
UNION ALL
SELECT status, count(*) AS n FROM image_optimization_items
WHERE status IN ('QUEUED', 'SUBMITTING', 'PROCESSING')
GROUP BY status;

-- =====================================================================================
-- Image features: presets, quotas, item cancel/retry, retention (pipeline/presets.py, quotas.py,
-- cancellation.py, retention.py). Migration 0002.
-- =====================================================================================

-- name: get_preset
-- One custom preset of a store.
SELECT store_id, name, spec, created_at, updated_at
FROM image_optimization_presets
WHERE store_id = %(store_id)s AND name = %(preset_name)s;

-- name: list_presets
-- Custom presets, of one store or of all.
SELECT store_id, name, spec, created_at, updated_at
FROM image_optimization_presets
WHERE (%(store_id)s::text IS NULL OR store_id = %(store_id)s::text)
ORDER BY store_id, name;

-- name: upsert_preset
-- Insert or replace a custom preset (the spec was validated by pipeline/presets.py).
INSERT INTO image_optimization_presets (store_id, name, spec)
VALUES (%(store_id)s, %(preset_name)s, %(spec)s)
ON CONFLICT (store_id, name) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()
RETURNING store_id, name, spec, created_at, updated_at;

-- name: lock_store_presets
-- Serialize preset creations of one store for the rest of the transaction (the cap check).
SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':presets:' || %(store_id)s, 0));

-- name: count_presets
-- How many custom presets a store has.
SELECT count(*) AS n FROM image_optimization_presets WHERE store_id = %(store_id)s;

-- name: insert_preset
-- A new custom preset; nothing when the store already has one of that name.
INSERT INTO image_optimization_presets (store_id, name, spec)
VALUES (%(store_id)s, %(preset_name)s, %(spec)s)
ON CONFLICT (store_id, name) DO NOTHING
RETURNING store_id, name, spec, created_at, updated_at;

-- name: update_preset
-- Replace an existing custom preset's spec; nothing when the store has none of that name.
UPDATE image_optimization_presets
SET spec = %(spec)s, updated_at = now()
WHERE store_id = %(store_id)s AND name = %(preset_name)s
RETURNING store_id, name, spec, created_at, updated_at;

-- name: delete_preset
-- Remove a custom preset.
DELETE FROM image_optimization_presets
WHERE store_id = %(store_id)s AND name = %(preset_name)s
RETURNING name;

-- name: set_store_quota
-- Per-store limit of items per rolling window (NULL: the default from settings).
INSERT INTO image_optimization_stores (store_id, daily_item_quota)
VALUES (%(store_id)s, %(quota)s)
ON CONFLICT (store_id) DO UPDATE SET daily_item_quota = EXCLUDED.daily_item_quota
RETURNING store_id, daily_item_quota;

-- name: quota_usage
-- Per given store: its quota (NULL = none) and items started (queued) within the window.
SELECT s.store_id, q.quota,
       CASE WHEN q.quota IS NULL THEN 0 ELSE (
           SELECT count(*) FROM image_optimization_items i
           WHERE i.store_id = s.store_id
             AND i.queued_at > %(now)s - make_interval(secs => %(window_seconds)s)
       ) END AS used,
       CASE WHEN q.quota IS NULL THEN NULL ELSE (
           SELECT min(i.queued_at) + make_interval(secs => %(window_seconds)s)
           FROM image_optimization_items i
           WHERE i.store_id = s.store_id
             AND i.queued_at > %(now)s - make_interval(secs => %(window_seconds)s)
       ) END AS frees_at
FROM unnest(%(store_ids)s::text[]) AS s(store_id)
LEFT JOIN image_optimization_stores w USING (store_id)
CROSS JOIN LATERAL (
    SELECT coalesce(w.daily_item_quota, nullif(%(default_quota)s::int, 0)) AS quota
) q;

-- name: pending_counts
-- PENDING items per given store (what a quota is holding back).
SELECT store_id, count(*) AS n FROM image_optimization_items
WHERE status = 'PENDING' AND store_id = ANY(%(store_ids)s::text[])
GROUP BY store_id;

-- name: cancel_item
-- Cancel one item if it is in one of %(from_statuses)s; returns what was canceled.
UPDATE image_optimization_items
SET status = 'CANCELED', error_code = 'canceled', error_message = 'canceled by request',
    completed_at = now(), updated_at = now()
WHERE id = %(id)s AND status = ANY(%(from_statuses)s::text[])
RETURNING id, job_id, prediction_id;

-- name: retry_item
-- One FAILED item back to PENDING (attempts start over), unless retention deleted its
-- uploaded source (pipeline/cancellation.py says why to the caller).
UPDATE image_optimization_items
SET status = 'PENDING', attempts = 0, next_attempt_at = NULL, prediction_id = NULL,
    error_code = NULL, error_message = NULL, completed_at = NULL, input_deleted_at = NULL,
    updated_at = now()
WHERE id = %(id)s AND status = 'FAILED' AND source_deleted_at IS NULL
RETURNING id, job_id;

-- name: retention_due_inputs
-- Finished items completed before the cutoff whose inputs are not deleted yet: a normalized
-- input, an upload of %(bucket)s (released here, deleted by the originals sweep), or both.
SELECT id, input_key FROM image_optimization_items
WHERE completed_at < %(cutoff)s AND status IN ('DONE', 'FAILED', 'CANCELED')
  AND input_deleted_at IS NULL
  AND (input_key IS NOT NULL OR image_optimization_upload_key(source_url, %(bucket)s) IS NOT NULL)
ORDER BY completed_at
LIMIT %(limit)s;

-- name: mark_inputs_deleted
-- Record that these items' inputs were deleted (only while still finished).
UPDATE image_optimization_items
SET input_deleted_at = %(now)s
WHERE id = ANY(%(ids)s::bigint[]) AND input_deleted_at IS NULL
  AND status IN ('DONE', 'FAILED', 'CANCELED')
RETURNING id;

-- name: retention_due_originals
-- Uploads of %(bucket)s that no item needs any more (every item naming one has had its inputs
-- deleted) and that are still stored: the originals sweep's work list.
SELECT DISTINCT i.source_url FROM image_optimization_items i
WHERE i.source_url ~ '^s3://[^/]+/uploads/' AND i.input_deleted_at IS NOT NULL
  AND i.source_deleted_at IS NULL
  AND image_optimization_upload_key(i.source_url, %(bucket)s) IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM image_optimization_items o
                  WHERE o.source_url = i.source_url AND o.source_url ~ '^s3://[^/]+/uploads/'
                    AND o.input_deleted_at IS NULL)
LIMIT %(limit)s;

-- name: mark_originals_deleted
-- Record that these uploads were deleted, on every item that had released them (rows locked in
-- id order, so two runs at once queue up instead of deadlocking); returns each upload once.
WITH released AS (
    SELECT id FROM image_optimization_items
    WHERE source_url = ANY(%(urls)s::text[]) AND source_url ~ '^s3://[^/]+/uploads/'
      AND input_deleted_at IS NOT NULL AND source_deleted_at IS NULL
    ORDER BY id
    FOR UPDATE
), marked AS (
    UPDATE image_optimization_items i
    SET source_deleted_at = %(now)s
    FROM released r
    WHERE i.id = r.id AND i.source_deleted_at IS NULL
    RETURNING i.source_url
)
SELECT DISTINCT source_url FROM marked;

-- name: retention_due_outputs
-- DONE items whose result is older than the cutoff and still stored.
SELECT id, output_key FROM image_optimization_items
WHERE completed_at < %(cutoff)s AND status = 'DONE'
  AND output_key IS NOT NULL AND output_deleted_at IS NULL
ORDER BY completed_at
LIMIT %(limit)s;

-- name: mark_outputs_deleted
-- Record that these items' results were deleted (the key stays, for the record).
UPDATE image_optimization_items
SET output_deleted_at = %(now)s
WHERE id = ANY(%(ids)s::bigint[]) AND output_deleted_at IS NULL AND status = 'DONE'
RETURNING id;

-- name: retention_due_jobs
-- Finished jobs older than the cutoff with no unfinished item (their rows may go).
SELECT j.id FROM image_optimization_jobs j
WHERE j.status IN ('DONE', 'FAILED', 'CANCELED') AND j.completed_at < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM image_optimization_items i
                  WHERE i.job_id = j.id AND i.status NOT IN ('DONE', 'FAILED', 'CANCELED'))
ORDER BY j.completed_at
LIMIT %(limit)s;

-- name: retention_job_objects
-- Objects still stored for the items of these jobs (deleted before the rows).
SELECT id, job_id, input_key, output_key FROM image_optimization_items
WHERE job_id = ANY(%(job_ids)s::bigint[])
  AND ((input_key IS NOT NULL AND input_deleted_at IS NULL)
       OR (output_key IS NOT NULL AND output_deleted_at IS NULL));

-- name: retention_job_originals
-- Uploads of %(bucket)s named by items of these jobs (with the job), still stored and needed by
-- no item of another job (deleted with the rows; one still needed stays: that item names it).
SELECT DISTINCT i.job_id, i.source_url FROM image_optimization_items i
WHERE i.job_id = ANY(%(job_ids)s::bigint[]) AND i.source_deleted_at IS NULL
  AND image_optimization_upload_key(i.source_url, %(bucket)s) IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM image_optimization_items o
                  WHERE o.source_url = i.source_url AND o.source_url ~ '^s3://[^/]+/uploads/'
                    AND o.input_deleted_at IS NULL
                    AND o.job_id <> ALL(%(job_ids)s::bigint[]));

-- name: delete_job_items
-- Delete the item rows of these jobs (if still finished); returns how many.
WITH gone AS (
    DELETE FROM image_optimization_items
    WHERE job_id = ANY(%(job_ids)s::bigint[]) AND status IN ('DONE', 'FAILED', 'CANCELED')
    RETURNING 1
)
SELECT count(*) AS n FROM gone;

-- name: delete_jobs
-- Delete job rows left without items (after delete_job_items); returns their ids.
DELETE FROM image_optimization_jobs j
WHERE j.id = ANY(%(job_ids)s::bigint[]) AND j.status IN ('DONE', 'FAILED', 'CANCELED')
  AND NOT EXISTS (SELECT 1 FROM image_optimization_items i WHERE i.job_id = j.id)
RETURNING j.id;

-- name: retention_counts
-- What a retention run would delete now (dry run): inputs, outputs, jobs and their items,
-- uploaded originals (by the inputs window) and expired guest sessions.
SELECT
    (SELECT count(*) FROM image_optimization_items
     WHERE completed_at < %(input_cutoff)s AND status IN ('DONE', 'FAILED', 'CANCELED')
       AND input_deleted_at IS NULL
       AND (input_key IS NOT NULL
            OR image_optimization_upload_key(source_url, %(bucket)s) IS NOT NULL)) AS inputs,
    (SELECT count(*) FROM image_optimization_items
     WHERE completed_at < %(output_cutoff)s AND status = 'DONE'
       AND output_key IS NOT NULL AND output_deleted_at IS NULL) AS outputs,
    (SELECT count(*) FROM image_optimization_jobs j
     WHERE j.status IN ('DONE', 'FAILED', 'CANCELED') AND j.completed_at < %(rows_cutoff)s
       AND NOT EXISTS (SELECT 1 FROM image_optimization_items i
                       WHERE i.job_id = j.id
                         AND i.status NOT IN ('DONE', 'FAILED', 'CANCELED'))) AS jobs,
    (SELECT count(*) FROM image_optimization_items i
     JOIN image_optimization_jobs j ON j.id = i.job_id
     WHERE j.status IN ('DONE', 'FAILED', 'CANCELED') AND j.completed_at < %(rows_cutoff)s
       AND NOT EXISTS (SELECT 1 FROM image_optimization_items x
                       WHERE x.job_id = j.id
                         AND x.status NOT IN ('DONE', 'FAILED', 'CANCELED'))) AS items,
    (SELECT count(DISTINCT i.source_url) FROM image_optimization_items i
     WHERE i.source_url ~ '^s3://[^/]+/uploads/' AND i.source_deleted_at IS NULL
       AND image_optimization_upload_key(i.source_url, %(bucket)s) IS NOT NULL
       AND (i.input_deleted_at IS NOT NULL
            OR (i.completed_at < %(input_cutoff)s AND i.status IN ('DONE', 'FAILED', 'CANCELED')))
       AND NOT EXISTS (SELECT 1 FROM image_optimization_items o
                       WHERE o.source_url = i.source_url AND o.input_deleted_at IS NULL
                         AND o.source_url ~ '^s3://[^/]+/uploads/'
                         AND NOT (o.completed_at < %(input_cutoff)s
                                  AND o.status IN ('DONE', 'FAILED', 'CANCELED')))) AS originals,
    (SELECT count(*) FROM image_optimization_guest_sessions
     WHERE expires_at < %(now)s) AS guest_sessions;

-- name: prune_guest_sessions
-- Delete up to %(limit)s console guest sessions that expired before %(now)s (an expired
-- session no longer signs anyone in); rows another run holds are skipped, not waited for.
DELETE FROM image_optimization_guest_sessions
WHERE id IN (SELECT id FROM image_optimization_guest_sessions
             WHERE expires_at < %(now)s
             ORDER BY expires_at
             LIMIT %(limit)s
             FOR UPDATE SKIP LOCKED)
RETURNING id;

-- =============================================================================================
-- HTTP API and web console: callers (API keys, guest sessions), owned jobs, usage.
-- =============================================================================================

-- name: api_set_job_owner
-- Record who created a job through the API, and a guest's client network (same transaction as
-- the insert).
UPDATE image_optimization_jobs
SET owner_type = %(owner_type)s, owner_id = %(owner_id)s, client_network = %(client_network)s
WHERE id = %(job_id)s;

-- name: api_insert_key
-- A new API key for a store (only the hash is stored).
INSERT INTO image_optimization_api_keys (store_id, key_prefix, key_hash, name)
VALUES (%(store_id)s, %(key_prefix)s, %(key_hash)s, %(label)s)
RETURNING id, store_id, key_prefix, name, created_at;

-- name: api_find_key
-- The live key with this hash.
SELECT id, store_id, key_prefix, last_used_at
FROM image_optimization_api_keys
WHERE key_hash = %(key_hash)s AND revoked_at IS NULL;

-- name: api_touch_key
-- Mark a key used (the API calls it at most once a minute per key, to spare writes).
UPDATE image_optimization_api_keys SET last_used_at = now() WHERE id = %(id)s;

-- name: api_list_keys
-- Keys of one store (or all), newest first, never the hash.
SELECT id, store_id, key_prefix, name, created_at, last_used_at, revoked_at
FROM image_optimization_api_keys
WHERE %(store_id)s::text IS NULL OR store_id = %(store_id)s::text
ORDER BY id DESC;

-- name: api_revoke_key
-- Revoke a key by its id.
UPDATE image_optimization_api_keys SET revoked_at = now()
WHERE id = %(id)s AND revoked_at IS NULL
RETURNING id;

-- name: api_insert_store_session
-- A browser signed in with a store's API key (the cookie token's hash).
INSERT INTO image_optimization_store_sessions (token_hash, key_id, expires_at)
VALUES (%(token_hash)s, %(key_id)s, now() + make_interval(secs => %(ttl_seconds)s));

-- name: api_find_store_session
-- The live key of an unexpired store session (the shape of api_find_key).
SELECT k.id, k.store_id, k.key_prefix, k.last_used_at
FROM image_optimization_store_sessions s
JOIN image_optimization_api_keys k ON k.id = s.key_id
WHERE s.token_hash = %(token_hash)s AND s.expires_at > now() AND k.revoked_at IS NULL;

-- name: api_delete_store_session
-- Sign out: forget the session (nothing when it is gone already).
DELETE FROM image_optimization_store_sessions WHERE token_hash = %(token_hash)s;

-- name: api_prune_store_sessions
-- Forget expired store sessions (a few at a time, on each sign-in).
DELETE FROM image_optimization_store_sessions
WHERE token_hash IN (SELECT token_hash FROM image_optimization_store_sessions
                     WHERE expires_at < now() ORDER BY expires_at LIMIT 100);

-- name: api_insert_guest
-- A new console guest session.
INSERT INTO image_optimization_guest_sessions (id, token_hash, expires_at)
VALUES (%(id)s, %(token_hash)s, now() + make_interval(secs => %(ttl_seconds)s))
RETURNING id;

-- name: api_find_guest
-- The unexpired guest session with this token hash.
SELECT id, last_seen_at
FROM image_optimization_guest_sessions
WHERE token_hash = %(token_hash)s AND expires_at > now();

-- name: api_touch_guest
-- Slide a guest session's expiry (the API calls it at most once a minute per session).
UPDATE image_optimization_guest_sessions
SET last_seen_at = now(), expires_at = now() + make_interval(secs => %(ttl_seconds)s)
WHERE id = %(id)s;

-- name: api_get_job
-- One job with its owner and counters (ownership is checked by the caller).
SELECT id, store_id, owner_type, owner_id, model, prompt, params, preset, status,
       total_items, done_items, failed_items, canceled_items, created_at, updated_at, completed_at
FROM image_optimization_jobs
WHERE id = %(id)s;

-- name: api_job_items
-- The items of one job as the API shows them.
SELECT id, status, source_url, input_key, output_key, output_width, output_height,
       output_bytes, output_content_type, error_code, error_message, attempts,
       created_at, updated_at, completed_at, input_deleted_at, output_deleted_at,
       source_deleted_at
FROM image_optimization_items
WHERE job_id = %(job_id)s
ORDER BY id;

-- name: api_items_of_jobs
-- The items of several jobs (one page of a caller's history) as the API shows them.
SELECT job_id, id, status, source_url, input_key, output_key, output_width, output_height,
       output_bytes, output_content_type, error_code, error_message, attempts,
       created_at, updated_at, completed_at, input_deleted_at, output_deleted_at,
       source_deleted_at
FROM image_optimization_items
WHERE job_id = ANY(%(job_ids)s::bigint[])
ORDER BY job_id, id;

-- name: api_list_jobs
-- A caller's newest jobs: a guest's own, or every job of a store except guests' jobs; a page
-- ends before the job id `before` (NULL: from the newest).
SELECT id, store_id, owner_type, owner_id, model, prompt, params, preset, status,
       total_items, done_items, failed_items, canceled_items, created_at, updated_at, completed_at
FROM image_optimization_jobs
WHERE CASE WHEN %(owner_type)s::text = 'guest'
           THEN owner_type = 'guest' AND owner_id = %(owner_id)s::text
           ELSE store_id = %(store_id)s::text AND owner_type IS DISTINCT FROM 'guest' END
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: api_get_item
-- One item with its job's owner, for owner-gated file delivery.
SELECT i.id, i.job_id, i.store_id, i.status, i.source_url, i.input_key, i.output_key,
       i.output_content_type, i.input_deleted_at, i.output_deleted_at, i.source_deleted_at,
       j.owner_type, j.owner_id
FROM image_optimization_items i
JOIN image_optimization_jobs j ON j.id = i.job_id
WHERE i.id = %(id)s;

-- name: api_usage
-- Items a caller created in the window, and when the oldest of them leaves it.
SELECT count(*) AS used,
       min(i.created_at) + make_interval(secs => %(window_seconds)s) AS frees_at
FROM image_optimization_items i
JOIN image_optimization_jobs j ON j.id = i.job_id
WHERE i.created_at > now() - make_interval(secs => %(window_seconds)s)
  AND CASE WHEN %(owner_type)s::text = 'guest'
           THEN j.owner_type = 'guest' AND j.owner_id = %(owner_id)s::text
           ELSE i.store_id = %(store_id)s::text AND j.owner_type IS DISTINCT FROM 'guest' END;

-- name: api_lock_usage
-- Serialize the quota check and the insert of one owner's or one client network's new items
-- until the transaction ends (per schema: deployments sharing a database do not wait on each
-- other). Callers take several keys in sorted order, so two requests never wait on each other.
SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':api-usage:' || %(key)s, 0));

-- name: api_network_usage
-- Items every guest of one client network created in the window, and when the oldest leaves it.
SELECT count(*) AS used,
       min(i.created_at) + make_interval(secs => %(window_seconds)s) AS frees_at
FROM image_optimization_jobs j
JOIN image_optimization_items i ON i.job_id = j.id
WHERE j.client_network = %(client_network)s
  AND j.owner_type = 'guest'
  AND j.created_at > now() - make_interval(secs => %(window_seconds)s)
  AND i.created_at > now() - make_interval(secs => %(window_seconds)s);

-- name: api_ping
-- Readiness probe: the database answers on the project schema.
SELECT count(*) AS n FROM image_optimization_jobs WHERE false;

-- =============================================================================================
-- Metrics: the scheduler leader's backlog gauges (pipeline/metrics.py).
-- =============================================================================================

-- name: metrics_pending_by_store
-- The %(limit)s stores with most PENDING items, each row also carrying how many stores have any.
SELECT store_id, n, count(*) OVER () AS stores
FROM (SELECT store_id, count(*) AS n FROM image_optimization_items
      WHERE status = 'PENDING' GROUP BY store_id) s
ORDER BY n DESC, store_id
LIMIT greatest(%(limit)s, 1);

-- name: get_control
-- An operator switch (docs/SCHEDULING.md, "Pausing submissions"); no row: off.
SELECT name, enabled, reason, changed_by, changed_at
FROM image_optimization_controls
WHERE name = %(control)s;

-- name: set_control
-- Turn a switch on or off; a no-op (no row returned) when it is already so, which keeps the
-- first reason and time. Wakes the scheduler leader (the channel of the items' NOTIFY trigger).
WITH changed AS (
    INSERT INTO image_optimization_controls AS c (name, enabled, reason, changed_by)
    VALUES (%(control)s, %(enabled)s, %(reason)s, %(changed_by)s)
    ON CONFLICT (name) DO UPDATE
        SET enabled = EXCLUDED.enabled, reason = EXCLUDED.reason,
            changed_by = EXCLUDED.changed_by, changed_at = now()
        WHERE c.enabled IS DISTINCT FROM EXCLUDED.enabled
    RETURNING name, enabled, reason, changed_by, changed_at
)
SELECT changed.*, pg_notify('imageopt_pending', current_schema()) AS woke FROM changed;

-- name: migrations_table_present
-- Whether this schema was ever migrated (the bookkeeping table of ``imageopt migrate``).
SELECT to_regclass('imageopt_schema_migrations') IS NOT NULL AS present;

-- name: applied_migrations
-- Versions applied to this schema; only after migrations_table_present said it exists.
SELECT version FROM imageopt_schema_migrations ORDER BY version;

-- =============================================================================================
-- Operator console and levers (api/opspage.py, api/operator_auth.py, cli/stores.py,
-- cli/failed.py; docs/OPERATIONS.md). Migration 0009.
-- =============================================================================================

-- name: ops_insert_operator_key
-- A new operator key (only the hash is stored).
INSERT INTO image_optimization_operator_keys (name, key_prefix, key_hash)
VALUES (%(label)s, %(key_prefix)s, %(key_hash)s)
RETURNING id, name, key_prefix, created_at;

-- name: ops_find_operator_key
-- The live operator key with this hash.
SELECT id, name, key_prefix, last_used_at
FROM image_optimization_operator_keys
WHERE key_hash = %(key_hash)s AND revoked_at IS NULL;

-- name: ops_touch_operator_key
-- Mark an operator key used (at most once a minute per key, to spare writes).
UPDATE image_optimization_operator_keys SET last_used_at = now() WHERE id = %(id)s;

-- name: ops_list_operator_keys
-- Operator keys, newest first, never the hash.
SELECT id, name, key_prefix, created_at, last_used_at, revoked_at
FROM image_optimization_operator_keys
ORDER BY id DESC;

-- name: ops_revoke_operator_key
-- Revoke an operator key; its console sessions end with it.
UPDATE image_optimization_operator_keys SET revoked_at = now()
WHERE id = %(id)s AND revoked_at IS NULL
RETURNING id;

-- name: ops_insert_session
-- A signed-in operator browser (the cookie token's hash).
INSERT INTO image_optimization_operator_sessions (token_hash, key_id, expires_at)
VALUES (%(token_hash)s, %(key_id)s, now() + make_interval(secs => %(ttl_seconds)s));

-- name: ops_find_session
-- The unexpired session with this token hash, of a live key.
SELECT k.id, k.name, k.key_prefix, k.last_used_at
FROM image_optimization_operator_sessions s
JOIN image_optimization_operator_keys k ON k.id = s.key_id
WHERE s.token_hash = %(token_hash)s AND s.expires_at > now() AND k.revoked_at IS NULL;

-- name: ops_delete_session
-- Sign out: forget the session.
DELETE FROM image_optimization_operator_sessions WHERE token_hash = %(token_hash)s;

-- name: ops_prune_sessions
-- Forget expired operator sessions (a few at a time, on each sign-in).
DELETE FROM image_optimization_operator_sessions
WHERE token_hash IN (SELECT token_hash FROM image_optimization_operator_sessions
                     WHERE expires_at < now() ORDER BY expires_at LIMIT 100);

-- name: ops_audit
-- Record one operator action (who, what, on what, why).
INSERT INTO image_optimization_audit_log (actor, action, target, reason, details)
VALUES (%(actor)s, %(action)s, %(target)s, %(reason)s, %(details)s::jsonb)
RETURNING id, at;

-- name: ops_audit_recent
-- The newest %(limit)s audit entries.
SELECT id, at, actor, action, target, reason, details
FROM image_optimization_audit_log
ORDER BY id DESC
LIMIT %(limit)s;

-- name: ops_status_counts
-- Items by status across all stores (the console's overview).
SELECT status, count(*) AS n FROM image_optimization_items GROUP BY status;

-- name: ops_store_stats
-- Per store (those with settings, a backlog or work finished since %(since)s): backlog, items
-- finished and failed since %(since)s, p50/p95 seconds from insert to DONE, weight, quota, pause.
WITH active AS (
    SELECT store_id,
           count(*) FILTER (WHERE status = 'PENDING') AS pending,
           count(*) FILTER (WHERE status IN ('QUEUED', 'SUBMITTING', 'PROCESSING')) AS in_flight
    FROM image_optimization_items
    WHERE status IN ('PENDING', 'QUEUED', 'SUBMITTING', 'PROCESSING')
    GROUP BY store_id
), finished AS (
    SELECT store_id,
           count(*) FILTER (WHERE status = 'DONE') AS done,
           count(*) FILTER (WHERE status = 'FAILED') AS failed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at))
               FILTER (WHERE status = 'DONE') AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at))
               FILTER (WHERE status = 'DONE') AS p95
    FROM image_optimization_items
    WHERE completed_at >= %(since)s AND status IN ('DONE', 'FAILED')
    GROUP BY store_id
), ids AS (
    SELECT store_id FROM active
    UNION SELECT store_id FROM finished
    UNION SELECT store_id FROM image_optimization_stores
)
SELECT ids.store_id,
       coalesce(a.pending, 0) AS pending, coalesce(a.in_flight, 0) AS in_flight,
       coalesce(f.done, 0) AS done, coalesce(f.failed, 0) AS failed, f.p50, f.p95,
       coalesce(w.weight, 1) AS weight, w.daily_item_quota AS quota,
       coalesce(w.paused, false) AS paused, w.paused_reason
FROM ids
LEFT JOIN active a USING (store_id)
LEFT JOIN finished f USING (store_id)
LEFT JOIN image_optimization_stores w USING (store_id)
ORDER BY ids.store_id
LIMIT %(limit)s;

-- name: ops_get_store
-- One store's settings (no row: the defaults: weight 1, no quota of its own, not paused).
SELECT store_id, weight, daily_item_quota AS quota, paused, paused_reason, updated_at
FROM image_optimization_stores
WHERE store_id = %(store_id)s;

-- name: ops_set_store
-- Change a store's weight, quota and pause (NULL keeps a field; %(clear_quota)s sets the quota
-- back to the default) and wake the scheduler leader, which reads them on its next pass.
WITH changed AS (
    INSERT INTO image_optimization_stores AS s (store_id, weight, daily_item_quota, paused,
                                               paused_reason)
    VALUES (%(store_id)s, coalesce(%(weight)s::int, 1), %(quota)s::int,
            coalesce(%(paused)s::boolean, false),
            CASE WHEN %(paused)s::boolean THEN %(reason)s::text END)
    ON CONFLICT (store_id) DO UPDATE SET
        weight = coalesce(%(weight)s::int, s.weight),
        daily_item_quota = CASE WHEN %(clear_quota)s THEN NULL
                                ELSE coalesce(%(quota)s::int, s.daily_item_quota) END,
        paused = coalesce(%(paused)s::boolean, s.paused),
        paused_reason = CASE WHEN %(paused)s::boolean IS NULL THEN s.paused_reason
                             WHEN %(paused)s::boolean THEN %(reason)s::text END,
        updated_at = now()
    RETURNING store_id, weight, daily_item_quota AS quota, paused, paused_reason, updated_at
)
SELECT changed.*, pg_notify('imageopt_pending', current_schema()) AS woke FROM changed;

-- name: ops_paused_stores
-- How many stores are paused (the metric and the stats endpoint).
SELECT count(*) AS n FROM image_optimization_stores WHERE paused;

-- name: ops_failed_items
-- FAILED items matching the filters (each NULL = any; image_optimization_failed_matching,
-- migration 0012), newest first, with the detailed error_message (operators only) and the
-- total that match.
SELECT i.id, i.job_id, i.store_id, f.model, i.source_url,
       i.error_code, i.error_message, i.attempts, i.created_at, i.submitted_at, i.completed_at,
       i.input_key, i.input_deleted_at, i.prediction_id,
       count(*) OVER () AS total
FROM image_optimization_failed_matching(
    %(store_id)s::text, %(job_id)s::bigint, %(model)s::text, %(error_code)s::text,
    %(since)s::timestamptz, %(until)s::timestamptz) AS f
JOIN image_optimization_items i ON i.id = f.item_id
ORDER BY i.completed_at DESC NULLS LAST, i.id DESC
LIMIT %(limit)s;

-- name: ops_count_failed
-- How many FAILED items match the filters (what a retry of the filter would move).
SELECT count(*) AS n
FROM image_optimization_failed_matching(
    %(store_id)s::text, %(job_id)s::bigint, %(model)s::text, %(error_code)s::text,
    %(since)s::timestamptz, %(until)s::timestamptz);

-- name: ops_count_source_deleted
-- How many FAILED items match the filters but cannot be retried: retention deleted their
-- uploaded source (what a retry of the filter skips).
SELECT count(*) AS n
FROM image_optimization_failed_matching(
    %(store_id)s::text, %(job_id)s::bigint, %(model)s::text, %(error_code)s::text,
    %(since)s::timestamptz, %(until)s::timestamptz) AS f
JOIN image_optimization_items i ON i.id = f.item_id
WHERE i.source_deleted_at IS NOT NULL;

-- name: ops_retry_failed
-- FAILED items matching the filters back to PENDING (attempts start over), at most %(limit)s
-- of them (NULL: all): never more than an operator confirmed. Items whose uploaded source
-- retention deleted stay FAILED (ops_count_source_deleted counts them). Returns the others.
UPDATE image_optimization_items i
SET status = 'PENDING', attempts = 0, next_attempt_at = NULL, prediction_id = NULL,
    error_code = NULL, error_message = NULL, completed_at = NULL, input_deleted_at = NULL,
    updated_at = now()
FROM (
    SELECT f.item_id FROM image_optimization_failed_matching(
        %(store_id)s::text, %(job_id)s::bigint, %(model)s::text, %(error_code)s::text,
        %(since)s::timestamptz, %(until)s::timestamptz) AS f
    ORDER BY f.item_id
    LIMIT %(limit)s::bigint
) AS m
WHERE i.id = m.item_id AND i.status = 'FAILED' AND i.source_deleted_at IS NULL
RETURNING i.id, i.job_id;

-- name: ops_get_item
-- One item as operators see it (any store, detailed error).
SELECT i.id, i.job_id, i.store_id, i.status, coalesce(i.model, j.model) AS model, i.source_url,
       i.input_key, i.output_key, i.output_content_type, i.input_deleted_at,
       i.output_deleted_at, i.source_deleted_at, i.error_code, i.error_message, i.attempts
FROM image_optimization_items i
JOIN image_optimization_jobs j ON j.id = i.job_id
WHERE i.id = %(id)s;

-- name: claim_due_callbacks
-- Completion callbacks that are due, claimed for %(lease_seconds)s (another leader skips them)
-- and counted as an attempt; what the POST needs to say.
UPDATE image_optimization_jobs j
SET callback_next_at = now() + make_interval(secs => %(lease_seconds)s),
    callback_attempts = j.callback_attempts + 1
WHERE j.id IN (
    SELECT id FROM image_optimization_jobs
    WHERE callback_state = 'pending' AND callback_next_at <= now()
    ORDER BY callback_next_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING j.id, j.store_id, j.status, j.callback_url, j.callback_attempts, j.total_items,
          j.done_items, j.failed_items, j.canceled_items, j.completed_at;

-- name: end_callback
-- A claimed callback delivered (sent) or given up (failed); only by the attempt that claimed it.
UPDATE image_optimization_jobs
SET callback_state = %(state)s, callback_error = %(error)s, callback_next_at = NULL
WHERE id = %(id)s AND callback_state = 'pending' AND callback_attempts = %(attempt)s
RETURNING id;

-- name: retry_callback
-- A claimed callback that failed this attempt: due again after %(delay_seconds)s.
UPDATE image_optimization_jobs
SET callback_next_at = now() + make_interval(secs => %(delay_seconds)s), callback_error = %(error)s
WHERE id = %(id)s AND callback_state = 'pending' AND callback_attempts = %(attempt)s
RETURNING id;

-- ======================================================================================
-- Go-live levers (pipeline/golive.py, api/golive_routes.py, cli/golive.py)

-- name: golive_rows
-- Every go-live lever that was ever set: name, value (jsonb), reason, who, when.
SELECT name, value, reason, changed_by, changed_at
FROM image_optimization_golive
ORDER BY name;

-- name: golive_set
-- Set one lever; a no-op (no row returned) when it already has this value, which keeps the
-- first reason and time. Wakes the scheduler leader (the channel of the items' NOTIFY trigger).
WITH changed AS (
    INSERT INTO image_optimization_golive AS g (name, value, reason, changed_by)
    VALUES (%(lever)s, %(value)s::jsonb, %(reason)s, %(changed_by)s)
    ON CONFLICT (name) DO UPDATE
        SET value = EXCLUDED.value, reason = EXCLUDED.reason,
            changed_by = EXCLUDED.changed_by, changed_at = now()
        WHERE g.value IS DISTINCT FROM EXCLUDED.value
    RETURNING name, value, reason, changed_by, changed_at
)
SELECT changed.*, pg_notify('imageopt_pending', current_schema()) AS woke FROM changed;

-- name: pending_heads_enabled
-- pending_heads without the items of the disabled models %(disabled)s (they stay PENDING and
-- never hold back the items of enabled models behind them).
SELECT h.id, h.job_id, h.store_id, h.source_url, h.priority, h.created_at,
       e.model, e.prompt, e.params
FROM unnest(%(store_ids)s::text[]) AS s(store_id)
CROSS JOIN LATERAL (
    SELECT i.* FROM image_optimization_items i
    JOIN image_optimization_item_settings x ON x.item_id = i.id
    WHERE i.store_id = s.store_id AND i.status = 'PENDING'
      AND (i.next_attempt_at IS NULL OR i.next_attempt_at <= %(now)s)
      AND coalesce(x.model, '') <> ALL (%(disabled)s::text[])
    ORDER BY i.priority DESC, i.created_at, i.id
    LIMIT %(per_store)s
) h
JOIN image_optimization_item_settings e ON e.item_id = h.id;
