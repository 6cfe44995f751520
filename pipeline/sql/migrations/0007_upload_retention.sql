-- 0007_upload_retention: retention of uploaded originals (``uploads/`` in the bucket, the
-- sources of `imageopt submit FOLDER`, API and console uploads) and of expired guest sessions.
-- Additive only: upstream SQL of 0001 still works. See docs/FEATURES.md, "Retention".

-- When retention deleted the item's uploaded original (its source object under uploads/). Set
-- on every item naming that upload at once, since several items may share one.
ALTER TABLE image_optimization_items ADD COLUMN source_deleted_at timestamptz;

-- The bucket key of an uploaded source URL (``s3://{bucket}/uploads/...``), or NULL when the
-- URL is not one of the bucket's uploads or its key has an empty, "." or ".." segment or a
-- control character (such a key could name something else; retention leaves it alone). The
-- same rule as pipeline/uploads.py:upload_key_of, tested to agree.
CREATE FUNCTION image_optimization_upload_key(source_url text, bucket text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN starts_with(source_url, 's3://' || bucket || '/uploads/')
             AND substr(source_url, length(bucket) + 7) !~ '(^|/)\.{0,2}(/|$)'
             AND source_url !~ '[\x01-\x1f]'
        THEN substr(source_url, length(bucket) + 7)
    END
$$;

-- Items that still need their uploaded original (unfinished, or final within the inputs
-- window), found by source URL when retention asks whether an upload may go. A hash index:
-- only equality is asked, and source URLs (up to 8 KiB) may be longer than a btree entry.
CREATE INDEX image_optimization_items_upload_needed_idx
    ON image_optimization_items USING hash (source_url)
    WHERE source_url ~ '^s3://[^/]+/uploads/' AND input_deleted_at IS NULL;

-- Uploads whose items have had their inputs deleted but whose original is still stored: the
-- work list of the originals sweep (rows leave it as soon as the original is deleted).
CREATE INDEX image_optimization_items_originals_due_idx
    ON image_optimization_items (input_deleted_at)
    WHERE source_url ~ '^s3://[^/]+/uploads/' AND input_deleted_at IS NOT NULL
      AND source_deleted_at IS NULL;

-- Pruning expired console guest sessions.
CREATE INDEX image_optimization_guest_sessions_expires_idx
    ON image_optimization_guest_sessions (expires_at);
