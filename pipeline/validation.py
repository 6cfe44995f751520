"""Validation: values on their way into Postgres, and rows before an item costs anything.

Input checks (the HTTP API and the CLI, before anything is written): :func:`check_text` and
:func:`parse_json` refuse what Postgres cannot store or what would cost us to handle, naming
where it was (:class:`~pipeline.errors.MalformedInput`): a NUL, a lone surrogate, a number
outside 64 bits or not finite, JSON nested deeper than :data:`MAX_JSON_DEPTH`, a string over
:data:`MAX_TEXT_CHARS`.

Row validation (the scheduler): an item whose row can never succeed (unknown model, bad params,
missing prompt, a URL we will never fetch, an empty store id, a negative priority) ends FAILED at
once with its error code, before it takes a queue slot, a download or a provider call.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pipeline.allowlist import ModelSpec, get_model
from pipeline.errors import (
    InvalidParams,
    InvalidPriority,
    InvalidSourceUrl,
    InvalidStoreId,
    MalformedInput,
    NotJson,
    PipelineError,
)
from pipeline.fetch import check_source_url as check_fetchable_url
from pipeline.fetch import parse_s3_url
from pipeline.rows import PendingItem

MAX_URL_LENGTH = 4096
"""Longest ``source_url`` accepted on a row, characters (redirects may be longer: the
fetcher's own cap is :data:`pipeline.fetch.MAX_URL_LENGTH`)."""
MAX_TEXT_CHARS = 8192
"""Longest string accepted anywhere in input, characters: twice the longest field we keep
(a 4096-character URL), so no legitimate value is near it."""
MAX_KEY_CHARS = 256
"""Longest object key accepted, characters (ours are short names; keys become error paths)."""
MAX_JSON_DEPTH = 16
"""Deepest nesting of arrays and objects accepted; a job body nests 4 (items, item, params)."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Integers outside 64 bits are refused: Postgres ``bigint``, and what most JSON readers keep."""
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""The range of ``priority`` (a Postgres ``integer`` column)."""
_MAX_INT_DIGITS = len(str(INT64_MAX))
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Unparsed:
    """An integer literal too long to convert (CPython refuses over 4300 digits, and the
    conversion is quadratic below that): kept as a marker for :func:`check_json_value`."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _Unparsed:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= _MAX_INT_DIGITS else _Unparsed(digits)


def _text_problem(value: str, max_chars: int) -> str | None:
    if len(value) > max_chars:
        return f"is longer than {max_chars} characters"
    if "\x00" in value:
        return "contains a NUL character"
    if _SURROGATE.search(value):
        return "contains a lone surrogate (not valid Unicode)"
    return None


def check_text(value: str, field: str, *, max_chars: int = MAX_TEXT_CHARS) -> None:
    """Refuse text Postgres cannot store, or too long to be a real value.

    Args:
        value: the text.
        field: where it came from, for the error (``prompt``, ``items[0].sourceUrl``).
        max_chars: the longest accepted, characters.

    Raises:
        MalformedInput: it holds a NUL (U+0000) or a lone surrogate (U+D800-U+DFFF, no valid
            UTF-8), or is longer than ``max_chars``.
    """
    problem = _text_problem(value, max_chars)
    if problem is not None:
        raise MalformedInput(field, f"{field} {problem}")


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def check_json_value(value: Any, field: str = "", *, _depth: int = 0) -> None:
    """Walk a parsed JSON value and refuse what :func:`check_text` refuses in any string or
    key (keys at most :data:`MAX_KEY_CHARS`), integers outside 64 bits, numbers that are not
    finite (``NaN``, ``1e999``), and nesting deeper than :data:`MAX_JSON_DEPTH`.

    Args:
        value: the parsed value (from :func:`parse_json`, or ``json.loads``).
        field: its path, e.g. ``params``; empty for a whole request body. Errors name the
            path of the bad value within it (``items[0].sourceUrl``).

    Raises:
        MalformedInput: naming the path of the first bad value.
    """
    where = field or "body"
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, _Unparsed) or (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not INT64_MIN <= value <= INT64_MAX
    ):
        raise MalformedInput(where, f"{where} is a number outside the 64-bit integer range")
    elif isinstance(value, float) and not math.isfinite(value):
        raise MalformedInput(where, f"{where} is not a finite number")
    elif isinstance(value, dict | list):
        if _depth >= MAX_JSON_DEPTH:
            raise MalformedInput(where, f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key, MAX_KEY_CHARS)
                if problem is not None:
                    raise MalformedInput(where, f"a key of {where} {problem}")
                check_json_value(item, _join(field, key), _depth=_depth + 1)
        else:
            for index, item in enumerate(value):
                check_json_value(item, f"{where}[{index}]", _depth=_depth + 1)


def check_priority(value: int, field: str = "priority") -> None:
    """Refuse a priority Postgres cannot store.

    Raises:
        MalformedInput: outside :data:`INT32_MIN` .. :data:`INT32_MAX`.
    """
    if not INT32_MIN <= value <= INT32_MAX:
        raise MalformedInput(field, f"{field} is outside {INT32_MIN}..{INT32_MAX}")


def check_input(values: Mapping[str, Any], prefix: str = "") -> None:
    """Check the values a command is about to store: text with :func:`check_text`, anything
    else with :func:`check_json_value`; None is skipped.

    Args:
        values: field name -> value (``{"prompt": ..., "params": {...}}``).
        prefix: put before each field name in errors (``items[3].``).

    Raises:
        MalformedInput: naming the first bad field.
    """
    for name, value in values.items():
        if isinstance(value, str):
            check_text(value, prefix + name)
        elif value is not None:
            check_json_value(value, prefix + name)


def parse_json(data: str | bytes, field: str = "") -> Any:
    """Parse JSON text and check it with :func:`check_json_value`.

    Args:
        data: the text, or bytes in UTF-8/16/32 (as :func:`json.loads` detects them).
        field: what the text is (``params``); empty for a whole request body (``body``).

    Returns:
        The parsed value.

    Raises:
        NotJson: the text does not parse (or is not UTF-8/16/32).
        MalformedInput: it parses, but holds a value :func:`check_json_value` refuses, or is
            nested too deep for the parser.
    """
    where = field or "body"
    try:
        value = json.loads(data, parse_int=_parse_int)
    except RecursionError as exc:  # the C parser's own limit (about 1000 levels)
        raise MalformedInput(
            where, f"{where} is nested deeper than {MAX_JSON_DEPTH} levels"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise NotJson(where, f"{where} is not valid JSON") from exc
    check_json_value(value, field)
    return value


def check_source_url(url: str) -> None:
    """Reject source URLs the workers will never read: at most 4096 characters, and either an
    upload (``s3://bucket/key``, :func:`pipeline.fetch.parse_s3_url`) or a URL the fetcher
    accepts (:func:`pipeline.fetch.check_source_url`, the one rule for http(s) sources).

    Raises:
        InvalidSourceUrl: empty, too long, a malformed ``s3://`` URL, or anything the
            fetcher's check refuses (scheme, host, port).
    """
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidSourceUrl("source_url is empty or longer than 4096 characters")
    if parse_s3_url(url) is None:
        check_fetchable_url(url)


def validate_item(item: PendingItem, allowlist: Mapping[str, ModelSpec]) -> PipelineError | None:
    """Return the error that dooms this item, or None when it may be queued.

    Args:
        item: a PENDING item with the job's defaults folded in (``pending_heads``).
        allowlist: the model allowlist.
    """
    try:
        if not item.store_id.strip():
            raise InvalidStoreId("store_id is empty")
        if item.priority < 0:
            raise InvalidPriority(f"priority {item.priority} is negative; use 0 or more")
        check_source_url(item.source_url)
        spec = get_model(item.model, allowlist)
        params = item.params or {}
        if not isinstance(params, Mapping):
            raise InvalidParams("params must be a JSON object")
        spec.validate(item.prompt, params)
    except PipelineError as exc:
        return exc
    return None
