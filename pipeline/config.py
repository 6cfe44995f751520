"""Settings, read once from the environment at a process's entry point into a frozen object.

Names follow the seeds where they exist (``REPLICATE_*``, ``DATABASE_URL``, ``REDIS_URL``);
everything of ours is prefixed ``IMAGEOPT_``. ``.env.example`` lists them all with defaults.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.prediction_errors import DEFAULT_INPUT_FETCH_ERROR_PATTERN


class Settings(BaseSettings):
    """Every knob of the pipeline. Construct once per process (``Settings()``) and pass down.

    Rates are requests per minute; sizes are bytes; durations are seconds unless the name ends
    in ``_ms`` (the seed's ``REPLICATE_MAX_WAIT_MS``).
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # --- stores of state -------------------------------------------------------------------
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/postgres", validation_alias="DATABASE_URL"
    )
    db_schema: str = Field("imageopt", validation_alias="IMAGEOPT_DB_SCHEMA")
    db_pool_max_size: int = Field(8, validation_alias="IMAGEOPT_DB_POOL_MAX_SIZE")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    redis_namespace: str = Field("imageopt", validation_alias="IMAGEOPT_REDIS_NAMESPACE")

    # --- object storage (S3 / MinIO / SeaweedFS) -------------------------------------------
    s3_endpoint: str = Field("127.0.0.1:8333", validation_alias="S3_ENDPOINT")
    s3_access_key: SecretStr = Field(SecretStr("imageopt"), validation_alias="S3_ACCESS_KEY")
    s3_secret_key: SecretStr = Field(SecretStr("imageopt-secret"), validation_alias="S3_SECRET_KEY")
    s3_bucket: str = Field("imageopt", validation_alias="S3_BUCKET")
    s3_region: str = Field("us-east-1", validation_alias="S3_REGION")
    s3_secure: bool = Field(False, validation_alias="S3_SECURE")
    presign_expiry_seconds: int = Field(3600, validation_alias="IMAGEOPT_PRESIGN_EXPIRY_SECONDS")

    # --- provider (Replicate's HTTP API or the emulator) -----------------------------------
    replicate_api_token: SecretStr = Field(SecretStr(""), validation_alias="REPLICATE_API_TOKEN")
    replicate_base_url: str = Field(
        "https://api.replicate.com/v1", validation_alias="REPLICATE_BASE_URL"
    )
    replicate_image_model: str = Field(
        "google/nano-banana", validation_alias="REPLICATE_IMAGE_MODEL"
    )
    replicate_max_wait_ms: int = Field(0, ge=0, validation_alias="REPLICATE_MAX_WAIT_MS")
    """Replicate's sync mode for creates (the seed's name): hold each create up to this long
    (``Prefer: wait=N``, rounded up to whole seconds, at most 60 s) so that a prediction that
    finishes meanwhile is completed by the creation worker without a poll. 0 (default): async
    creates, polled. A held create keeps its worker thread: size ``--threads`` for
    creations per second times the wait (docs/LIFECYCLE.md, "Sync mode")."""
    replicate_webhook_url: str = Field("", validation_alias="IMAGEOPT_WEBHOOK_URL")
    """Public URL of this deployment's webhook route (``https://host/api/webhooks/replicate``);
    set, every prediction is created with ``webhook`` and ``webhook_events_filter:
    ["completed"]``, the api verifies and accepts what Replicate sends there, and the first poll
    waits for the model's expected runtime plus ``IMAGEOPT_WEBHOOK_POLL_GRACE_SECONDS`` (polling
    is the fallback, docs/LIFECYCLE.md "Webhooks"). Empty (default): no webhooks."""
    replicate_webhook_secret: SecretStr = Field(
        SecretStr(""), validation_alias="REPLICATE_WEBHOOK_SECRET"
    )
    """The account's ``whsec_...`` signing secret; empty = asked once from the provider
    (``GET /v1/webhooks/default/secret``) by the api at its first webhook."""
    webhook_poll_grace_seconds: float = Field(
        30.0, gt=0, validation_alias="IMAGEOPT_WEBHOOK_POLL_GRACE_SECONDS"
    )
    """With webhooks on: seconds past the model's expected runtime before the fallback poll."""
    callback_secret: SecretStr = Field(SecretStr(""), validation_alias="IMAGEOPT_CALLBACK_SECRET")
    """``whsec_<base64>`` key that signs the completion callbacks POSTed to jobs'
    ``callback_url`` (docs/UPSTREAM.md); empty: such callbacks fail (``callback_error``)."""
    model_prices: str = Field("", validation_alias="IMAGEOPT_MODEL_PRICES")
    """Price per provider second by model, USD, as a JSON object (``{"owner/name": 0.000225}``),
    for ``imageopt usage``; models not listed use :data:`pipeline.usage.DEFAULT_PRICES`."""
    replicate_default_aspect_ratio: str = Field(
        "1:1", validation_alias="REPLICATE_DEFAULT_ASPECT_RATIO"
    )
    provider_timeout_seconds: float = Field(
        30.0, validation_alias="IMAGEOPT_PROVIDER_TIMEOUT_SECONDS"
    )

    # --- rate limits (requests per minute; Replicate documents 600 create / 3000 other) ----
    create_rpm: int = Field(450, validation_alias="IMAGEOPT_CREATE_RPM")
    read_rpm: int = Field(2400, validation_alias="IMAGEOPT_READ_RPM")
    rate_window_seconds: float = Field(60.0, validation_alias="IMAGEOPT_RATE_WINDOW_SECONDS")
    rate_guard_seconds: float = Field(0.3, validation_alias="IMAGEOPT_RATE_GUARD_SECONDS")
    """Margin added to the window for the hard limit (``Budget.guard_seconds``); 0.3 s removed
    the 429s of a saturated benchmark (docs/BENCHMARKS.md)."""
    rate_guard_adaptive: bool = Field(True, validation_alias="IMAGEOPT_RATE_GUARD_ADAPTIVE")
    """Arrival correction of the create budget: count each create from its estimated arrival
    at the provider (its ``created_at``, shared through Redis, :mod:`pipeline.ratelimit.arrivals`)
    and shrink the guard to 0.025 s once 200 creates spanning one window were seen;
    ``IMAGEOPT_RATE_GUARD_SECONDS`` applies until then. Off: always the fixed guard."""
    rate_limit_acquire_timeout_seconds: float = Field(
        30.0, validation_alias="IMAGEOPT_RATE_LIMIT_ACQUIRE_TIMEOUT_SECONDS"
    )
    default_retry_after_seconds: float = Field(
        10.0, validation_alias="IMAGEOPT_DEFAULT_RETRY_AFTER_SECONDS"
    )

    # --- input limits -----------------------------------------------------------------------
    max_input_bytes: int = Field(20 * 1024 * 1024, validation_alias="IMAGEOPT_MAX_INPUT_BYTES")
    max_input_pixels: int = Field(50_000_000, validation_alias="IMAGEOPT_MAX_INPUT_PIXELS")
    max_output_bytes: int = Field(100 * 1024 * 1024, validation_alias="IMAGEOPT_MAX_OUTPUT_BYTES")
    max_output_pixels: int = Field(150_000_000, validation_alias="IMAGEOPT_MAX_OUTPUT_PIXELS")
    preview_max_render_pixels: int = Field(
        16_000_000, ge=250_000, validation_alias="IMAGEOPT_PREVIEW_MAX_RENDER_PIXELS"
    )
    """Pixels the size preview lays a preset's output out at, at most (16 MP: about 48 MB as
    RGB, 64 MB as RGBA, per preview at once). A larger output (a custom preset may ask for
    8192 x 8192 with upscale: 67 MP) is laid out smaller and its bytes extrapolated; the answer
    says so (``method: downscaled``, ``render_width``/``render_height``; docs/API.md)."""
    fetch_timeout_seconds: float = Field(20.0, validation_alias="IMAGEOPT_FETCH_TIMEOUT_SECONDS")
    fetch_max_redirects: int = Field(3, validation_alias="IMAGEOPT_FETCH_MAX_REDIRECTS")
    source_allowlist: str = Field("", validation_alias="IMAGEOPT_SOURCE_ALLOWLIST")
    """Comma-separated CIDRs that the SSRF guard lets through (e.g. ``127.0.0.0/8`` for a demo)."""

    # --- lifecycle --------------------------------------------------------------------------
    max_attempts: int = Field(5, validation_alias="IMAGEOPT_MAX_ATTEMPTS")
    backoff_base_seconds: float = Field(2.0, validation_alias="IMAGEOPT_BACKOFF_BASE_SECONDS")
    backoff_max_seconds: float = Field(300.0, validation_alias="IMAGEOPT_BACKOFF_MAX_SECONDS")
    input_fetch_error_pattern: str = Field(
        DEFAULT_INPUT_FETCH_ERROR_PATTERN, validation_alias="IMAGEOPT_INPUT_FETCH_ERROR_PATTERN"
    )
    """Regular expression (case-insensitive) over a failed prediction's ``error`` that marks
    an input the provider could not download: such an item gets a new prediction (an attempt,
    up to ``IMAGEOPT_MAX_ATTEMPTS``) instead of ending FAILED. Empty: every failure is final
    (:mod:`pipeline.prediction_errors`)."""
    poll_initial_delay_seconds: float = Field(
        1.0, validation_alias="IMAGEOPT_POLL_INITIAL_DELAY_SECONDS"
    )
    poll_max_delay_seconds: float = Field(30.0, validation_alias="IMAGEOPT_POLL_MAX_DELAY_SECONDS")
    adaptive_polling: bool = Field(True, validation_alias="IMAGEOPT_ADAPTIVE_POLLING")
    """Poll a new prediction first at the median runtime of the model's recent predictions
    (shared through Redis, :mod:`pipeline.pollhints`) instead of after the fixed initial delay;
    then back off as before. Off: always the initial delay."""
    item_max_age_seconds: float = Field(3600.0, validation_alias="IMAGEOPT_ITEM_MAX_AGE_SECONDS")

    # --- scheduler --------------------------------------------------------------------------
    in_flight_budget_seconds: float = Field(
        2.0, validation_alias="IMAGEOPT_IN_FLIGHT_BUDGET_SECONDS"
    )
    """Seconds of create budget kept QUEUED at most (DESIGN §4: "a few seconds of budget"); also
    about the longest a late store's first item waits behind others (docs/SCHEDULING.md)."""
    min_in_flight: int = Field(4, validation_alias="IMAGEOPT_MIN_IN_FLIGHT")
    scheduler_tick_seconds: float = Field(1.0, validation_alias="IMAGEOPT_SCHEDULER_TICK_SECONDS")
    heartbeat_seconds: float = Field(30.0, validation_alias="IMAGEOPT_HEARTBEAT_SECONDS")

    # --- workers ----------------------------------------------------------------------------
    worker_processes: int = Field(1, validation_alias="IMAGEOPT_WORKER_PROCESSES")
    worker_threads: int = Field(8, validation_alias="IMAGEOPT_WORKER_THREADS")
    worker_fetch_wait_ms: int = Field(100, ge=10, validation_alias="IMAGEOPT_WORKER_FETCH_WAIT_MS")
    """Longest pause, ms, of a worker's queue consumer between two looks at its queue when it
    found nothing (or its prefetch was full), for the queues on the latency path
    (:func:`pipeline.taskqueue.latency_queues`: creations, webhook finishes, and polls when
    webhooks are off). dramatiq's default of 1,000 ms made a message of a quiet queue wait up
    to a second (p90 484 -> 77 ms at 2 messages/s, docs/BENCHMARKS.md,
    ``bench.bench_consumer_wait``)."""
    worker_idle_fetch_wait_ms: int = Field(
        1000, ge=10, validation_alias="IMAGEOPT_WORKER_IDLE_FETCH_WAIT_MS"
    )
    """The same pause for every other consumer (delay queues of retries and early webhooks,
    the fallback polls with webhooks on): dramatiq's worker timeout and its default. Ten looks
    a second there cost an idle polling worker 30 ms of CPU per second against 4 ms at
    1,000 ms (docs/BENCHMARKS.md)."""

    # --- observability ----------------------------------------------------------------------
    log_level: str = Field("INFO", validation_alias="IMAGEOPT_LOG_LEVEL")
    log_format: str = Field("json", validation_alias="IMAGEOPT_LOG_FORMAT")

    # --- faults (recovery thresholds; short in the fault-injection suite, tests/faults) -------
    rescue_interval_seconds: float = Field(
        15.0, validation_alias="IMAGEOPT_RESCUE_INTERVAL_SECONDS"
    )
    """How often the scheduler leader runs the rescuer."""
    rescue_queued_seconds: float = Field(120.0, validation_alias="IMAGEOPT_RESCUE_QUEUED_SECONDS")
    """A QUEUED item untouched this long has lost its message: it is sent again."""
    rescue_processing_seconds: float = Field(
        0.0, validation_alias="IMAGEOPT_RESCUE_PROCESSING_SECONDS"
    )
    """A PROCESSING item not polled this long gets a poll; 0 means max(60, 3 x max poll delay)."""
    rescue_submitting_seconds: float = Field(
        300.0, validation_alias="IMAGEOPT_RESCUE_SUBMITTING_SECONDS"
    )
    """A SUBMITTING item untouched this long is resolved (adopt the prediction, or queue again).
    Must exceed the longest live submission (acquire timeout + provider timeout + fetch)."""
    provider_output_hosts: str = Field(
        "replicate.delivery", validation_alias="IMAGEOPT_PROVIDER_OUTPUT_HOSTS"
    )
    """Comma-separated hosts (with subdomains) outputs may be downloaded from over https,
    besides the API's own origin (the emulator serves outputs there)."""

    # --- fair scheduling (docs/SCHEDULING.md) ---------------------------------------------
    submissions_paused: bool = Field(False, validation_alias="IMAGEOPT_SUBMISSIONS_PAUSED")
    """Feature flag: the scheduler leader meters nothing (items stay PENDING; rescue, job
    counters and heartbeat go on). Read at start: restart the schedulers to change it."""
    scheduler_busy_tick_seconds: float = Field(
        0.1, validation_alias="IMAGEOPT_SCHEDULER_BUSY_TICK_SECONDS"
    )
    """How soon the leader looks again while the in-flight window is full."""

    # --- HTTP API and web console (docs/API.md) --------------------------------------------
    api_host: str = Field("127.0.0.1", validation_alias="IMAGEOPT_API_HOST")
    api_port: int = Field(8080, validation_alias="IMAGEOPT_API_PORT")
    api_rate_per_minute: int = Field(30, validation_alias="IMAGEOPT_API_RATE_PER_MINUTE")
    """Requests per caller per rolling minute on ``/api/*`` that are not reads (``POST``,
    ``PUT``, ``DELETE``: job creation, previews, analyses, cancel, retry, preset writes), and per
    client address on every request that starts a guest session or fails to authenticate
    (seed 002: ``apiRateLimiter`` 30/min)."""
    api_read_rate_per_minute: int = Field(300, validation_alias="IMAGEOPT_API_READ_RATE_PER_MINUTE")
    """Reads (``GET``/``HEAD``: the console page, flags, usage, history, job status, event
    streams, images) per caller per rolling minute; 0 = unlimited. The console's busiest minute
    for one person is about 220 reads (a cold page of five 10-image jobs, two older pages, a
    10-image job followed by polling; docs/CONSOLE.md "Requests and limits"); 300 covers it with
    room and still bounds a script to 5 reads a second per caller."""
    api_create_rate_per_minute: int = Field(
        10, validation_alias="IMAGEOPT_API_CREATE_RATE_PER_MINUTE"
    )
    """Job creations per caller per rolling minute (seed 002: ``aiJobsLimiter`` 10/min)."""
    api_preset_writes_per_minute: int = Field(
        10, validation_alias="IMAGEOPT_API_PRESET_WRITES_PER_MINUTE"
    )
    """Custom preset creates, updates and deletes per caller per rolling minute; 0 = unlimited
    (seed 004: ``RATE_LIMIT_CUSTOM_PRESETS=10``)."""
    api_max_presets_per_store: int = Field(
        100, validation_alias="IMAGEOPT_API_MAX_PRESETS_PER_STORE"
    )
    """Custom presets one store may keep through the API; 0 = unlimited. Bounds the table
    against a key that writes within its rate limit for days (``imageopt preset-add``, an
    operator's tool, is not capped)."""
    api_max_upload_bytes: int = Field(
        10 * 1024 * 1024, validation_alias="IMAGEOPT_API_MAX_UPLOAD_BYTES"
    )
    """Largest uploaded image (seed 002: 10 MB)."""
    api_max_files_per_job: int = Field(10, validation_alias="IMAGEOPT_API_MAX_FILES_PER_JOB")
    api_max_items_per_job: int = Field(100, validation_alias="IMAGEOPT_API_MAX_ITEMS_PER_JOB")
    """Most source URLs in one JSON job request."""
    api_guest_store: str = Field("console", validation_alias="IMAGEOPT_API_GUEST_STORE")
    """The store every console guest's jobs run under (one store for fair scheduling)."""
    api_guest_daily_items: int = Field(20, validation_alias="IMAGEOPT_API_GUEST_DAILY_ITEMS")
    """Items a guest may create per rolling 24 h (seed 002: 20/user/24h); 0 = unlimited."""
    api_store_daily_items: int = Field(0, validation_alias="IMAGEOPT_API_STORE_DAILY_ITEMS")
    """Items an API key's store may create through the API per rolling 24 h; 0 = unlimited."""
    api_guest_address_daily_items: int = Field(
        20, validation_alias="IMAGEOPT_API_GUEST_ADDRESS_DAILY_ITEMS"
    )
    """Items all guests of one client address (an IPv4 address, or an IPv6 /64) may create per
    rolling 24 h, whatever their cookies; 0 = unlimited. The seed's 20/user/24h is per person, and
    a new cookie is free: without this bound a script that drops its cookie gets a fresh quota on
    every request. Guests behind one NAT share it: raise it for such an audience."""
    api_guest_sessions_per_hour: int = Field(
        10, validation_alias="IMAGEOPT_API_GUEST_SESSIONS_PER_HOUR"
    )
    """New guest sessions (cookies) one client address may start per rolling hour; 0 = unlimited.
    A browser keeps its cookie for ``IMAGEOPT_API_GUEST_SESSION_DAYS``, so 10 leaves room for
    private windows and a few people behind one NAT and stops a cookie-dropping script from
    filling the sessions table."""
    api_guest_session_days: float = Field(30.0, validation_alias="IMAGEOPT_API_GUEST_SESSION_DAYS")
    api_store_session_hours: float = Field(
        12.0, gt=0, validation_alias="IMAGEOPT_API_STORE_SESSION_HOURS"
    )
    """How long a console sign-in with a store's API key lasts, hours (a working day, as the
    operator console's; no sliding: signing in again starts a new session)."""
    api_sign_in_attempts_per_minute: int = Field(
        10, validation_alias="IMAGEOPT_API_SIGN_IN_ATTEMPTS_PER_MINUTE"
    )
    """Console sign-ins with a store's key per client address per rolling minute; 0 =
    unlimited. Keys carry 256 random bits, so this bounds load and log noise, not guessing."""
    api_allowed_origins: str = Field("", validation_alias="IMAGEOPT_API_ALLOWED_ORIGINS")
    """Comma-separated origins allowed on state-changing requests; empty = the request's own
    ``scheme://Host`` (set it behind a proxy that rewrites Host)."""
    trusted_proxies: str = Field("", validation_alias="IMAGEOPT_TRUSTED_PROXIES")
    """Comma-separated addresses or CIDRs of the reverse proxies in front of the api (e.g. an
    ingress controller's pod network). Only a peer listed here may set the client address and
    scheme with ``X-Forwarded-For`` / ``X-Forwarded-Proto``; empty (default) = no proxy is
    trusted and the client is the TCP peer. Per-address limits count against that client."""
    api_generate_wait_seconds: float = Field(
        25.0, ge=0.0, le=300.0, validation_alias="IMAGEOPT_API_GENERATE_WAIT_SECONDS"
    )
    """How long ``POST /api/ai-image/generate`` waits for its item to finish before answering
    202 with the job's URL (seconds). 25 s stays under the 30 s a proxy or browser commonly
    gives a request, and covers a typical model run of a few seconds plus the queue."""
    api_queue_healthy_max: int = Field(500, validation_alias="IMAGEOPT_API_QUEUE_HEALTHY_MAX")
    """Stats endpoint: queue healthy below this many waiting items (seed 003: < 500)."""
    api_rpm_healthy_max_percent: float = Field(
        95.0, validation_alias="IMAGEOPT_API_RPM_HEALTHY_MAX_PERCENT"
    )
    """Stats endpoint: RPM healthy at or below this usage (seed 003: > 95 % is a warning)."""

    # --- metrics (docs/OBSERVABILITY.md) -----------------------------------------------
    metrics_host: str = Field("127.0.0.1", validation_alias="IMAGEOPT_METRICS_HOST")
    """Address the scheduler's and workers' ``/metrics`` servers bind (0.0.0.0 in a pod)."""
    scheduler_metrics_port: int = Field(9190, validation_alias="IMAGEOPT_SCHEDULER_METRICS_PORT")
    """The scheduler's ``/metrics`` port; 0 disables it."""
    worker_metrics_port: int = Field(9191, validation_alias="IMAGEOPT_WORKER_METRICS_PORT")
    """A worker group's ``/metrics`` port (``imageopt worker --metrics-port``); 0 disables it."""
    metrics_multiproc_dir: str = Field("", validation_alias="IMAGEOPT_METRICS_MULTIPROC_DIR")
    """prometheus-client multiprocess directory of a worker group, wiped at start; empty =
    ``$TMPDIR/imageopt-metrics/workers-<pid>``."""
    metrics_refresh_seconds: float = Field(5.0, validation_alias="IMAGEOPT_METRICS_REFRESH_SECONDS")
    """How often the scheduler leader reads queue depths from Postgres for the gauges."""
    metrics_top_stores: int = Field(10, validation_alias="IMAGEOPT_METRICS_TOP_STORES")
    """Stores with the largest backlog exported with a ``store`` label; 0 = none."""

    # --- health probes (pipeline/health.py, docs/DEPLOY.md "Ports and health endpoints") ----
    scheduler_liveness_seconds: float = Field(
        60.0, gt=0, validation_alias="IMAGEOPT_SCHEDULER_LIVENESS_SECONDS"
    )
    """The scheduler's ``/livez`` fails when its loop (leader cycle or standby retry) has not
    gone round for this long; ``/readyz`` also fails for this long after a dependency error."""
    worker_liveness_seconds: float = Field(
        60.0, gt=0, validation_alias="IMAGEOPT_WORKER_LIVENESS_SECONDS"
    )
    """A worker group's ``/livez`` fails when one of its processes has not beaten for this long
    (a process beats every few seconds while all its consumer and worker threads are alive)."""
    worker_stall_seconds: float = Field(
        300.0, gt=0, validation_alias="IMAGEOPT_WORKER_STALL_SECONDS"
    )
    """... or has handled no message for this long while its queues hold ready ones. Keep it
    above the actors' 180 s ``time_limit`` (workers/actors.py)."""
    api_liveness_seconds: float = Field(5.0, gt=0, validation_alias="IMAGEOPT_API_LIVENESS_SECONDS")
    """The api's ``/livez`` fails when its event loop was blocked for longer than this within
    the last three such periods (a fully blocked loop does not answer at all)."""

    # --- image features: quotas and retention (pipeline/quotas.py, scheduler/retention.py)
    default_daily_item_quota: int = Field(0, validation_alias="IMAGEOPT_DEFAULT_DAILY_ITEM_QUOTA")
    """Items a store may start per window unless ``image_optimization_stores`` says otherwise;
    0 = no quota (the default). Seed: 20 per user per 24 h."""
    quota_window_seconds: float = Field(86_400.0, validation_alias="IMAGEOPT_QUOTA_WINDOW_SECONDS")
    """Length of the rolling quota window, seconds (24 h)."""
    retention_inputs_seconds: float = Field(
        86_400.0, validation_alias="IMAGEOPT_RETENTION_INPUTS_SECONDS"
    )
    """Normalized inputs of finished items are deleted after this many seconds (seed: 24 h)."""
    retention_outputs_seconds: float = Field(
        2_592_000.0, validation_alias="IMAGEOPT_RETENTION_OUTPUTS_SECONDS"
    )
    """Results are deleted this many seconds after completion (seed: 30 d)."""
    retention_rows_seconds: float = Field(
        7_776_000.0, validation_alias="IMAGEOPT_RETENTION_ROWS_SECONDS"
    )
    """Finished jobs and their items are deleted this many seconds after completion (seed: 90 d)."""
    retention_interval_seconds: float = Field(
        600.0, validation_alias="IMAGEOPT_RETENTION_INTERVAL_SECONDS"
    )
    """How often the scheduler leader runs retention; 0 = never (run ``imageopt retention``)."""
    retention_dry_run: bool = Field(False, validation_alias="IMAGEOPT_RETENTION_DRY_RUN")
    """Scheduled runs only count what is due (logged), deleting nothing."""

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        """Refuse an entry that is not an IP address or network (a typo would trust nobody, or
        ``*`` everybody, silently)."""
        for entry in (e.strip() for e in value.split(",")):
            if entry:
                ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        """``IMAGEOPT_TRUSTED_PROXIES`` as a list of addresses and networks (may be empty)."""
        return [e.strip() for e in self.trusted_proxies.split(",") if e.strip()]
