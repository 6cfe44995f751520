-- 0005_controls: operator switches that the scheduler leader reads while it runs, so that an
-- incident step needs no restart. One row per switch; no row means the switch is off.
CREATE TABLE image_optimization_controls (
    name        text PRIMARY KEY CHECK (name IN ('submissions_paused')),
    enabled     boolean NOT NULL,
    reason      text CHECK (length(reason) <= 500),
    changed_by  text CHECK (length(changed_by) <= 200),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
