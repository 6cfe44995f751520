-- 0011_golive_controls: the go-live levers that the api and the scheduler read while they run
-- (docs/DEPLOY.md, "Feature flags and staged rollout"): feature flags, one model's on/off,
-- guests off (auth required) and the staged rollout. One row per lever; no row means the
-- start value from the environment (flags, auth required) or the built-in default (every
-- model on, rollout 100 %). Changes NOTIFY the scheduler; the api re-reads within a second.
CREATE TABLE image_optimization_golive (
    name        text PRIMARY KEY CHECK (name ~ '^(flag:[A-Z_]{1,64}|model:.{1,200}|auth_required|rollout)$'),
    value       jsonb NOT NULL,
    reason      text CHECK (length(reason) <= 500),
    changed_by  text CHECK (length(changed_by) <= 300),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
