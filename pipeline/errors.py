"""The error tree of the pipeline, and the stable ``error_code`` each error writes on a row.

Every failure that reaches an item row is a :class:`PipelineError` with a ``code`` (written to
``image_optimization_items.error_code``) and a ``transient`` flag (retry with backoff, or fail at
once). Library exceptions (httpx, psycopg, redis, minio, Pillow) are translated into this tree
at the module that calls the library, with ``raise ... from exc``::

    PipelineError                      internal_error
    ├── ConfigurationError             configuration_error
    ├── SourceError                    (fetching and validating the input image)
    │   ├── InvalidSourceUrl           invalid_source_url     permanent
    │   ├── SourceBlocked              source_blocked         permanent (SSRF guard)
    │   ├── SourceUnreachable          source_unreachable     transient
    │   ├── SourceHttpError            source_http_error      5xx transient, 4xx permanent
    │   ├── SourceTooLarge             source_too_large       permanent
    │   ├── EmptySource                empty_source           permanent
    │   ├── UnsupportedMediaType       unsupported_media_type permanent
    │   ├── NotAnImage                 not_an_image           permanent
    │   ├── ImageTruncated             image_truncated        permanent
    │   └── ImageTooLarge              image_too_large        permanent (pixel cap / bomb)
    ├── InvalidInput                   validation_error       (the row itself, or a request's input)
    │   ├── UnknownModel               unknown_model          permanent
    │   ├── InvalidParams              invalid_params         permanent
    │   │   └── MissingPrompt          missing_prompt         permanent
    │   ├── InvalidStoreId             invalid_store_id       permanent (empty store id)
    │   ├── InvalidPriority            invalid_priority       permanent (negative priority)
    │   ├── UnknownPreset              unknown_preset         permanent (no such preset)
    │   ├── InvalidPreset              invalid_preset         permanent (bad preset spec)
    │   └── MalformedInput             malformed_input        refused at the door, never on a row
    │       └── NotJson                malformed_input        (text that is no JSON at all)
    ├── StorageError                   storage_error          transient
    ├── ProviderError                  (the provider's HTTP API)
    │   ├── ProviderUnavailable        provider_unavailable   transient (5xx, connect errors)
    │   ├── ProviderTimeout            provider_timeout       transient
    │   ├── ProviderRateLimited        provider_rate_limited  transient (429, carries Retry-After)
    │   ├── ProviderRejected           provider_rejected      permanent (4xx other than 429)
    │   └── ProviderProtocolError      provider_protocol_error transient (malformed JSON)
    ├── PredictionFailed               prediction_failed      permanent (status "failed")
    │   └── PredictionInputUnreachable prediction_input_unreachable transient (a new prediction)
    ├── PredictionCanceled             canceled               permanent (status "canceled")
    ├── OutputInvalid                  output_invalid         permanent
    ├── ItemTimeout                    timeout                permanent (older than the max age)
    ├── RateLimitTimeout               rate_limit_timeout     transient (no token before deadline)
    ├── DatabaseUnavailable            database_unavailable   transient (never written to a row)
    ├── RateLimiterUnavailable         rate_limiter_unavailable transient (Redis unreachable)
    └── WebhookRejected                webhook_rejected       refused at the door, never on a row

An item's ``error_message`` keeps the detail for ops (addresses, DNS answers, HTTP statuses);
callers of the HTTP API see :func:`public_message` of its ``error_code`` instead, one stable
sentence per code from :data:`PUBLIC_MESSAGES` (listed in docs/LIFECYCLE.md, "Error codes").
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose.

    Attributes:
        code: stable snake_case ``error_code`` stored on the item row.
        transient: True when a later attempt may succeed (retry with backoff).
    """

    code: str = "internal_error"
    transient: bool = False

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if transient is not None:
            self.transient = transient


class ConfigurationError(PipelineError):
    code = "configuration_error"


class SourceError(PipelineError):
    code = "source_error"


class InvalidSourceUrl(SourceError):
    code = "invalid_source_url"


class SourceBlocked(SourceError):
    code = "source_blocked"


class SourceUnreachable(SourceError):
    code = "source_unreachable"
    transient = True


class SourceHttpError(SourceError):
    """The source server answered with an HTTP error; 5xx and 408/429 are transient."""

    code = "source_http_error"

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message, transient=status_code >= 500 or status_code in (408, 429))
        self.status_code = status_code


class SourceTooLarge(SourceError):
    code = "source_too_large"


class EmptySource(SourceError):
    code = "empty_source"


class UnsupportedMediaType(SourceError):
    code = "unsupported_media_type"


class NotAnImage(SourceError):
    code = "not_an_image"


class ImageTruncated(SourceError):
    code = "image_truncated"


class ImageTooLarge(SourceError):
    code = "image_too_large"


class InvalidInput(PipelineError):
    """The row (or a request's input) itself is wrong; named apart from pydantic's
    ``ValidationError``, its ``error_code`` stays ``validation_error`` (a public contract)."""

    code = "validation_error"


class UnknownModel(InvalidInput):
    code = "unknown_model"


class InvalidParams(InvalidInput):
    code = "invalid_params"


class MissingPrompt(InvalidParams):
    code = "missing_prompt"


class InvalidStoreId(InvalidInput):
    code = "invalid_store_id"


class InvalidPriority(InvalidInput):
    code = "invalid_priority"


class StorageError(PipelineError):
    code = "storage_error"
    transient = True


class ProviderError(PipelineError):
    code = "provider_error"


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    transient = True


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    transient = True


class ProviderRateLimited(ProviderError):
    """HTTP 429 from the provider.

    Attributes:
        retry_after: seconds to pause the whole budget, from ``Retry-After``.
    """

    code = "provider_rate_limited"
    transient = True

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    code = "provider_rejected"


class ProviderProtocolError(ProviderError):
    code = "provider_protocol_error"
    transient = True


class PredictionFailed(PipelineError):
    code = "prediction_failed"


class PredictionInputUnreachable(PredictionFailed):
    """The prediction failed because the provider could not download our input.

    Our object storage was briefly unreachable from the provider (a network cut, a restart):
    the model never ran on the image, so a new prediction may succeed. Transient: the item goes
    back to ``PENDING`` for a new prediction, bounded by ``IMAGEOPT_MAX_ATTEMPTS``
    (:func:`pipeline.prediction_errors.classify_failure` decides from the provider's error).
    """

    code = "prediction_input_unreachable"
    transient = True


class PredictionCanceled(PipelineError):
    code = "canceled"


class OutputInvalid(PipelineError):
    code = "output_invalid"


class ItemTimeout(PipelineError):
    code = "timeout"


class RateLimitTimeout(PipelineError):
    code = "rate_limit_timeout"
    transient = True


class SchemaNotMigrated(PipelineError):
    """The project schema lacks migrations this release needs (run ``imageopt migrate``).

    Attributes:
        missing: the versions not applied yet.
    """

    code = "schema_not_migrated"
    transient = True

    def __init__(self, schema: str, missing: list[int]) -> None:
        super().__init__(
            f"schema {schema} lacks migration(s) {', '.join(map(str, missing))}: "
            "run `imageopt migrate`"
        )
        self.missing = missing


class DatabaseUnavailable(PipelineError):
    """Postgres could not be reached or the connection broke; the caller retries later."""

    code = "database_unavailable"
    transient = True


class RateLimiterUnavailable(PipelineError):
    """The rate limiter's Redis could not be reached; nothing was granted, retry later."""

    code = "rate_limiter_unavailable"
    transient = True


class UnknownPreset(InvalidInput):
    """The job or item names a preset that is neither built in nor defined for its store."""

    code = "unknown_preset"


class InvalidPreset(InvalidInput):
    """A preset spec breaks the rules of :mod:`pipeline.presets` (the message says which).

    Attributes:
        field: what was wrong: ``name``, ``store_id``, ``spec`` (the whole spec) or one of its
            keys (``width``, ``format``, ...; the API reports it as ``spec.<key>``).
    """

    code = "invalid_preset"

    def __init__(self, message: str, *, field: str = "spec") -> None:
        super().__init__(message)
        self.field = field


class MalformedInput(InvalidInput):
    """A value refused before anything is stored: a NUL or a lone surrogate (Postgres cannot
    store either), a number out of range, JSON nested too deep, a string too long.

    Attributes:
        field: where the value was, e.g. ``prompt``, ``items[2].sourceUrl``, ``params.scale``.
    """

    code = "malformed_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotJson(MalformedInput):
    """Text that should be JSON does not parse at all (a syntax error, not a hostile value)."""


PUBLIC_MESSAGES: dict[str, str] = {
    "invalid_store_id": "the item has no store id",
    "invalid_priority": "the item's priority is negative",
    "invalid_source_url": "the source URL is not an http(s) or s3 URL that can be fetched",
    "unknown_model": "the model is not on the allowlist",
    "invalid_params": "a model parameter is not accepted or has a bad value",
    "missing_prompt": "the model needs a prompt",
    "source_blocked": "the source URL points to an address that is not allowed",
    "source_unreachable": "the source could not be reached",
    "source_http_error": "the source server answered with an HTTP error",
    "source_too_large": "the source image is larger than the size limit",
    "empty_source": "the source is empty",
    "unsupported_media_type": "the source is not a JPEG, PNG or WebP image",
    "not_an_image": "the source is not an image",
    "image_truncated": "the source image is truncated or corrupt",
    "image_too_large": "the source image has more pixels than the limit",
    "storage_error": "object storage was unavailable",
    "provider_unavailable": "the model provider was unavailable",
    "provider_timeout": "the model provider did not answer in time",
    "provider_rate_limited": "the model provider was busy (rate limited)",
    "provider_rejected": "the model provider rejected the request",
    "provider_protocol_error": "the model provider sent an unreadable answer",
    "rate_limit_timeout": "no capacity at the model provider in time",
    "prediction_failed": "the model failed on this image",
    "prediction_input_unreachable": "the model provider could not download the input image",
    "canceled": "canceled",
    "output_invalid": "the model's output is not a valid image",
    "unknown_preset": "the output preset does not exist",
    "invalid_preset": "the output preset is not valid",
    "timeout": "the item did not finish within its maximum age",
    "internal_error": "an internal error occurred",
}
"""The one sentence the HTTP API shows for each ``error_code`` (never the row's
``error_message``, which may name addresses, DNS answers or provider replies)."""

GENERIC_PUBLIC_MESSAGE = "the item failed"
"""What the API shows for a code missing from :data:`PUBLIC_MESSAGES`."""


def public_message(code: str | None) -> str | None:
    """The caller-facing message for an item's ``error_code``.

    Args:
        code: the row's ``error_code`` (None while it has none).

    Returns:
        The sentence of :data:`PUBLIC_MESSAGES`, :data:`GENERIC_PUBLIC_MESSAGE` for a code it
        does not list, or None when ``code`` is None.
    """
    if code is None:
        return None
    return PUBLIC_MESSAGES.get(code, GENERIC_PUBLIC_MESSAGE)


class WebhookRejected(PipelineError):
    """A webhook that is not the provider's (signature, timestamp or body); answered 4xx."""

    code = "webhook_rejected"
