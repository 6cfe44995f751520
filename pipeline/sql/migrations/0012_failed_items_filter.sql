-- 0012_failed_items_filter: one home for "the FAILED items an operator's filter matches". The
-- failed-items list, its count and the bulk retry (the /ops console, `imageopt failed`,
-- pipeline/sql/queries.sql: ops_failed_items, ops_count_failed, ops_retry_failed) all select
-- from this function, so what an operator sees and what a retry of the same filter moves
-- cannot drift apart. Each argument NULL = any; the model is the item's, else its job's; the
-- time bounds are on completed_at, [since, until).
-- SQL-language, STABLE, a single SELECT: the planner inlines it into the calling query like a
-- subquery, so the items table's indexes still apply. Its tables resolve on the caller's
-- search_path (the project schema). Additive only: upstream SQL of 0001 still works.
CREATE FUNCTION image_optimization_failed_matching(
    p_store_id text, p_job_id bigint, p_model text, p_error_code text,
    p_since timestamptz, p_until timestamptz
) RETURNS TABLE (item_id bigint, model text)
LANGUAGE sql STABLE AS $$
    SELECT i.id, coalesce(i.model, j.model)
    FROM image_optimization_items i
    JOIN image_optimization_jobs j ON j.id = i.job_id
    WHERE i.status = 'FAILED'
      AND (p_store_id IS NULL OR i.store_id = p_store_id)
      AND (p_job_id IS NULL OR i.job_id = p_job_id)
      AND (p_model IS NULL OR coalesce(i.model, j.model) = p_model)
      AND (p_error_code IS NULL OR i.error_code = p_error_code)
      AND (p_since IS NULL OR i.completed_at >= p_since)
      AND (p_until IS NULL OR i.completed_at < p_until)
$$;
