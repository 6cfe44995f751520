-- 0006_guest_addresses: the client network a console guest created a job from (an IPv4 address,
-- or an IPv6 /64; api/addresses.py), so that guests are bounded per address as well as
-- per cookie: a new cookie is free, an address is not (docs/API.md, "Quotas"). NULL for jobs of
-- stores and upstream inserts. Deleted with the job by retention.
ALTER TABLE image_optimization_jobs
    ADD COLUMN client_network text CHECK (length(client_network) <= 64);

CREATE INDEX image_optimization_jobs_client_network_idx
    ON image_optimization_jobs (client_network, created_at DESC)
    WHERE client_network IS NOT NULL;
