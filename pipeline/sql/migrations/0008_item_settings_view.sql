-- 0008_item_settings_view: one home for "the item overrides its job". An item's model,
-- prompt and preset are its own when set, else its job's; its params are the job's with the
-- item's keys on top. Every query that reads an item's effective settings (metering, the
-- creation worker's read and claim) joins this view instead of repeating the projection.
-- Additive only: no table changes, upstream SQL of 0001 still works. A later migration that
-- changes the type of one of these columns drops and recreates the view around it.
CREATE VIEW image_optimization_item_settings AS
SELECT i.id AS item_id,
       coalesce(i.model, j.model) AS model,
       coalesce(i.prompt, j.prompt) AS prompt,
       j.params || i.params AS params,
       coalesce(i.preset, j.preset) AS preset
FROM image_optimization_items i
JOIN image_optimization_jobs j ON j.id = i.job_id;
