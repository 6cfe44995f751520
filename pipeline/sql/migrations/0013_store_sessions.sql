-- 0013_store_sessions: a store's person signs in to the console with the store's API key
-- (POST /api/session, docs/API.md "Console sign-in"). One row per signed-in browser: the
-- store_session cookie holds a random token, the row its SHA-256, as operator sessions do.
-- Revoking the key ends its sessions (the lookup joins the live key; deleting it cascades).
CREATE TABLE image_optimization_store_sessions (
    token_hash    bytea PRIMARY KEY,
    key_id        bigint NOT NULL REFERENCES image_optimization_api_keys (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);

CREATE INDEX image_optimization_store_sessions_expires_idx
    ON image_optimization_store_sessions (expires_at);

CREATE INDEX image_optimization_store_sessions_key_idx
    ON image_optimization_store_sessions (key_id);
