-- Every SQL statement of the pipeline, one block per query, headed "-- name: <name>" and a
-- one-line description. Placeholders are psycopg's %(name)s. Only pipeline/repository.py runs them.
-- Every state change is conditional on the expected status, so running it twice is harmless.

-- name: count_in_flight
-- Items handed to the queue and not yet submitted (the metered window).
SELECT count(*) AS n
FROM image_optimization_items
WHERE status IN ('QUEUED', 'SUBMITTING');

-- name: pending_stores
-- Stores with PENDING items, by a loose index scan (one probe per store), with their weights.
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
WHERE s.store_id IS NOT NULL;

-- name: pending_heads
-- The first %(per_store)s due PENDING items of each given store: priority first, then age.
SELECT h.id, h.job_id, h.store_id, h.source_url, h.priority, h.created_at,
       coalesce(h.model, j.model) AS model,
       coalesce(h.prompt, j.prompt) AS prompt,
       j.params || h.params AS params
FROM unnest(%(store_ids)s::text[]) AS s(store_id)
CROSS JOIN LATERAL (
    SELECT i.* FROM image_optimization_items i
    WHERE i.store_id = s.store_id AND i.status = 'PENDING'
      AND (i.next_attempt_at IS NULL OR i.next_attempt_at <= %(now)s)
    ORDER BY i.priority DESC, i.created_at, i.id
    LIMIT %(per_store)s
) h
JOIN image_optimization_jobs j ON j.id = h.job_id;

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
-- One item with the job's defaults folded in (model, prompt, params, preset).
SELECT i.id, i.job_id, i.store_id, i.source_url, i.status, i.attempts, i.priority,
       i.prediction_id, i.input_key, i.poll_count, i.created_at, i.submitted_at,
       coalesce(i.model, j.model) AS model,
       coalesce(i.prompt, j.prompt) AS prompt,
       j.params || i.params AS params,
       j.preset
FROM image_optimization_items i
JOIN image_optimization_jobs j ON j.id = i.job_id
WHERE i.id = %(id)s;

-- name: record_input
-- Remember where the normalized input was stored (still QUEUED).
UPDATE image_optimization_items
SET input_key = %(input_key)s, updated_at = now()
WHERE id = %(id)s AND status = 'QUEUED'
RETURNING id;

-- name: claim_submission
-- QUEUED -> SUBMITTING: this worker, and only this one, may now create the prediction.
UPDATE image_optimization_items
SET status = 'SUBMITTING', attempts = attempts + 1, updated_at = now()
WHERE id = %(id)s AND status = 'QUEUED'
RETURNING attempts;

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
-- PROCESSING -> DONE with the stored result.
UPDATE image_optimization_items
SET status = 'DONE', output_key = %(output_key)s, output_width = %(width)s,
    output_height = %(height)s, output_bytes = %(bytes)s,
    output_content_type = %(content_type)s, error_code = NULL, error_message = NULL,
    completed_at = now(), updated_at = now()
WHERE id = %(id)s AND status = 'PROCESSING'
RETURNING id;

-- name: refresh_active_jobs
-- Job counters and status follow their items (for jobs not yet final).
WITH counts AS (
    SELECT i.job_id,
           count(*) AS total,
           count(*) FILTER (WHERE i.status = 'DONE') AS done,
           count(*) FILTER (WHERE i.status = 'FAILED') AS failed,
           count(*) FILTER (WHERE i.status = 'CANCELED') AS canceled,
           count(*) FILTER (WHERE i.status <> 'PENDING') AS started
    FROM image_optimization_items i
    WHERE i.job_id IN (SELECT id FROM image_optimization_jobs
                       WHERE status IN ('PENDING', 'PROCESSING'))
    GROUP BY i.job_id
)
UPDATE image_optimization_jobs j
SET total_items = c.total, done_items = c.done, failed_items = c.failed,
    canceled_items = c.canceled,
    status = CASE
        WHEN c.done + c.failed + c.canceled < c.total THEN
             CASE WHEN c.started > 0 THEN 'PROCESSING' ELSE 'PENDING' END
        WHEN c.done > 0 THEN 'DONE'
        WHEN c.failed > 0 THEN 'FAILED'
        ELSE 'CANCELED' END,
    completed_at = CASE WHEN c.done + c.failed + c.canceled = c.total THEN now() END,
    updated_at = now()
FROM counts c
WHERE j.id = c.job_id
  AND (j.total_items, j.done_items, j.failed_items, j.canceled_items, j.status)
      IS DISTINCT FROM (c.total::int, c.done::int, c.failed::int, c.canceled::int,
        CASE
          WHEN c.done + c.failed + c.canceled < c.total THEN
               CASE WHEN c.started > 0 THEN 'PROCESSING' ELSE 'PENDING' END
          WHEN c.done > 0 THEN 'DONE'
          WHEN c.failed > 0 THEN 'FAILED'
          ELSE 'CANCELED' END)
RETURNING j.id, j.status;

-- name: insert_job
-- A new job for one store (what upstream systems do; the CLI's submit does the same).
INSERT INTO image_optimization_jobs (store_id, model, prompt, params, preset)
VALUES (%(store_id)s, %(model)s, %(prompt)s, %(params)s, %(preset)s)
RETURNING id;

-- name: insert_item
-- One item of a job (status PENDING by default; the insert trigger NOTIFYs the scheduler).
INSERT INTO image_optimization_items (job_id, store_id, source_url, prompt, model, params, priority)
VALUES (%(job_id)s, %(store_id)s, %(source_url)s, %(prompt)s, %(model)s, %(params)s, %(priority)s);

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
-- Dead letters back to PENDING (ops' retry): attempts start over.
UPDATE image_optimization_items
SET status = 'PENDING', attempts = 0, next_attempt_at = NULL, prediction_id = NULL,
    error_code = NULL, error_message = NULL, completed_at = NULL, updated_at = now()
WHERE status = 'FAILED'
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
-- Non-final items by status across all stores (heartbeat and metrics; finished rows cost nothing).
SELECT status, count(*) AS n FROM image_optimization_items
WHERE status IN ('PENDING', 'QUEUED', 'SUBMITTING', 'PROCESSING')
GROUP BY status;
