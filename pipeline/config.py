"""Settings, read once from the environment at a process's entry point into a frozen object.

Names follow the seeds where they exist (``REPLICATE_*``, ``DATABASE_URL``, ``REDIS_URL``);
everything of ours is prefixed ``IMAGEOPT_``. ``.env.example`` lists them all with defaults.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    replicate_image_model: str = Field("google/nano-banana", validation_alias="REPLICATE_IMAGE_MODEL")
    replicate_max_wait_ms: int = Field(60_000, validation_alias="REPLICATE_MAX_WAIT_MS")
    replicate_default_aspect_ratio: str = Field(
        "1:1", validation_alias="REPLICATE_DEFAULT_ASPECT_RATIO"
    )
    provider_timeout_seconds: float = Field(30.0, validation_alias="IMAGEOPT_PROVIDER_TIMEOUT_SECONDS")

    # --- rate limits (requests per minute; Replicate documents 600 create / 3000 other) ----
    create_rpm: int = Field(450, validation_alias="IMAGEOPT_CREATE_RPM")
    read_rpm: int = Field(2400, validation_alias="IMAGEOPT_READ_RPM")
    rate_window_seconds: float = Field(60.0, validation_alias="IMAGEOPT_RATE_WINDOW_SECONDS")
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
    fetch_timeout_seconds: float = Field(20.0, validation_alias="IMAGEOPT_FETCH_TIMEOUT_SECONDS")
    fetch_max_redirects: int = Field(3, validation_alias="IMAGEOPT_FETCH_MAX_REDIRECTS")
    source_allowlist: str = Field("", validation_alias="IMAGEOPT_SOURCE_ALLOWLIST")
    """Comma-separated CIDRs that the SSRF guard lets through (e.g. ``127.0.0.0/8`` for a demo)."""

    # --- lifecycle --------------------------------------------------------------------------
    max_attempts: int = Field(5, validation_alias="IMAGEOPT_MAX_ATTEMPTS")
    backoff_base_seconds: float = Field(2.0, validation_alias="IMAGEOPT_BACKOFF_BASE_SECONDS")
    backoff_max_seconds: float = Field(300.0, validation_alias="IMAGEOPT_BACKOFF_MAX_SECONDS")
    poll_initial_delay_seconds: float = Field(1.0, validation_alias="IMAGEOPT_POLL_INITIAL_DELAY_SECONDS")
    poll_max_delay_seconds: float = Field(30.0, validation_alias="IMAGEOPT_POLL_MAX_DELAY_SECONDS")
    item_max_age_seconds: float = Field(3600.0, validation_alias="IMAGEOPT_ITEM_MAX_AGE_SECONDS")

    # --- scheduler --------------------------------------------------------------------------
    in_flight_budget_seconds: float = Field(5.0, validation_alias="IMAGEOPT_IN_FLIGHT_BUDGET_SECONDS")
    """Seconds of create budget kept QUEUED at most (DESIGN §4: "a few seconds of budget")."""
    min_in_flight: int = Field(4, validation_alias="IMAGEOPT_MIN_IN_FLIGHT")
    scheduler_tick_seconds: float = Field(1.0, validation_alias="IMAGEOPT_SCHEDULER_TICK_SECONDS")
    heartbeat_seconds: float = Field(30.0, validation_alias="IMAGEOPT_HEARTBEAT_SECONDS")

    # --- workers ----------------------------------------------------------------------------
    worker_processes: int = Field(1, validation_alias="IMAGEOPT_WORKER_PROCESSES")
    worker_threads: int = Field(8, validation_alias="IMAGEOPT_WORKER_THREADS")

    # --- observability ----------------------------------------------------------------------
    log_level: str = Field("INFO", validation_alias="IMAGEOPT_LOG_LEVEL")
    log_format: str = Field("json", validation_alias="IMAGEOPT_LOG_FORMAT")
