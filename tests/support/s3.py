"""The S3 server for tests: :mod:`devstack.s3` (the benchmarks use it too), re-exported."""

from devstack.s3 import (
    PrivateServer,
    S3Endpoint,
    ensure_s3_server,
    purge_bucket,
    server_script,
    start_private_server,
    stop_private_server,
    temporary_bucket,
    unique_bucket_name,
)

__all__ = [
    "PrivateServer",
    "S3Endpoint",
    "ensure_s3_server",
    "purge_bucket",
    "server_script",
    "start_private_server",
    "stop_private_server",
    "temporary_bucket",
    "unique_bucket_name",
]
