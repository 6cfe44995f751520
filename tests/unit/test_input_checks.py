"""Input checks before anything is stored (pure logic): hostile values anywhere in a JSON
document or a query string are refused naming where they were; the caller-facing sentence of
every error code matches docs/LIFECYCLE.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.input_guard import query_problem
from pipeline.errors import (
    GENERIC_PUBLIC_MESSAGE,
    PUBLIC_MESSAGES,
    MalformedInput,
    NotJson,
    PipelineError,
    public_message,
)
from pipeline.validation import (
    MAX_JSON_DEPTH,
    MAX_TEXT_CHARS,
    check_input,
    check_priority,
    check_text,
    parse_json,
)

LIFECYCLE = Path(__file__).resolve().parents[2] / "docs" / "LIFECYCLE.md"
PLACEHOLDER = "__HOSTILE__"

keys = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
)
documents = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=12,
)


def _hostile_strings() -> st.SearchStrategy[str]:
    around = st.text(max_size=10).map(lambda t: t.replace("\x00", ""))
    nul = st.tuples(around, around).map(lambda p: f"{p[0]}\x00{p[1]}")
    surrogate = st.tuples(around, st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
    return nul | surrogate.map(lambda p: p[0] + p[1])


HOSTILE_FRAGMENTS = st.one_of(
    _hostile_strings().map(json.dumps),  # "\u0000", "\ud800" escapes
    st.integers(20, 6000).map(lambda n: "9" * n),  # beyond 64 bits, and beyond CPython's limit
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]),
    st.integers(MAX_TEXT_CHARS + 1, 3 * MAX_TEXT_CHARS).map(lambda n: json.dumps("x" * n)),
    st.integers(MAX_JSON_DEPTH + 1, 3000).map(lambda n: "[" * n + "]" * n),
)


def _paths(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every (path, container) where a value sits, as the checks name paths."""
    found: list[tuple[str, Any]] = [(prefix, value)]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, f"{prefix}[{index}]")
    return found


@given(document=documents, fragment=HOSTILE_FRAGMENTS, data=st.data())
def test_a_hostile_value_anywhere_in_a_document_is_refused_naming_its_path(
    document: Any, fragment: str, data: st.DataObject
) -> None:
    root = {"doc": document}
    containers = [(p, v) for p, v in _paths(root) if isinstance(v, dict | list)]
    path, container = data.draw(st.sampled_from(containers))
    if isinstance(container, dict):
        container["hostile"] = PLACEHOLDER
        where = f"{path}.hostile" if path else "hostile"
    else:
        container.append(PLACEHOLDER)
        where = f"{path}[{len(container) - 1}]"
    text = json.dumps(root).replace(json.dumps(PLACEHOLDER), fragment)
    with pytest.raises(MalformedInput) as caught:
        parse_json(text)
    assert not isinstance(caught.value, NotJson)
    # deep nesting names where it got too deep (within the value), or the body (parser limit)
    assert (
        caught.value.field == where
        or caught.value.field.startswith(where + "[")
        or (caught.value.field == "body" and fragment.startswith("["))
    )
    assert caught.value.code == "malformed_input"


@given(document=documents)
def test_ordinary_documents_pass_unchanged(document: Any) -> None:
    root = {"doc": document}
    assert parse_json(json.dumps(root)) == root
    assert parse_json(json.dumps(root, ensure_ascii=False).encode()) == root


def test_the_named_probes_are_refused_with_their_field() -> None:
    cases = {
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}": "body",
        '{"params": {"scale": ' + "9" * 5000 + "}}": "params.scale",
        '{"prompt": "a\\u0000b"}': "prompt",
        '{"items": [{"sourceUrl": "https://example.com/\\u0000"}]}': "items[0].sourceUrl",
        '{"prompt": "\\ud800"}': "prompt",
        '{"x\\u0000": 1}': "body",
    }
    for text, field in cases.items():
        with pytest.raises(MalformedInput) as caught:
            parse_json(text)
        assert caught.value.field == field, text[:40]
    raw = '{"prompt": "\ud800"}'.encode("utf-8", "surrogatepass")  # CESU bytes, no escape
    with pytest.raises(MalformedInput, match="lone surrogate"):
        parse_json(raw)


def test_text_that_is_no_json_is_not_json_and_names_the_field() -> None:
    for text in ("", "{", b"\xff\xfe\xfd", "{'a': 1}"):
        with pytest.raises(NotJson) as caught:
            parse_json(text, "params")
        assert caught.value.field == "params"


def test_text_and_priority_checks_name_the_field() -> None:
    check_text("ordinary text, ünïcode, emoji 🎉", "prompt")
    for value, reason in (("a\x00", "NUL"), ("\udcff", "surrogate"), ("x" * 20, "longer")):
        with pytest.raises(MalformedInput, match=reason) as caught:
            check_text(value, "prompt", max_chars=10)
        assert caught.value.field == "prompt"
    check_priority(2**31 - 1)
    with pytest.raises(MalformedInput, match="priority"):
        check_priority(2**31)
    with pytest.raises(MalformedInput) as bad:
        check_input({"model": "m", "params": {"k": [1, "\x00"]}}, "items[3].")
    assert bad.value.field == "items[3].params.k[1]"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (b"download=%00", "download"),
        (b"download=%ED%A0%80", "download"),  # a lone surrogate, UTF-8 encoded: invalid
        (b"download=%ff", "download"),
        (b"a=1&download=" + b"9" * 5000, "download"),
        (b"%00=1", "query"),
        (b"x%ff=1", "query"),
    ],
)
def test_a_malformed_query_parameter_is_a_400_naming_it(query: bytes, field: str) -> None:
    error = query_problem(query)
    assert error is not None
    assert (error.status, error.details) == (400, {"field": field})


def test_ordinary_query_strings_pass() -> None:
    for query in (b"", b"download=1", b"a=&b", b"q=caf%C3%A9+au+lait&&x=%2F"):
        assert query_problem(query) is None


# --- what callers see of an item's error ---------------------------------------------------
def _lifecycle_table() -> dict[str, str]:
    text = LIFECYCLE.read_text(encoding="utf-8")
    section = text.split("## Error codes", 1)[1]
    rows = re.findall(r"^\| `([a-z_]+)` \|.*\| ([^|]+) \|$", section, flags=re.MULTILINE)
    return {code: message.strip() for code, message in rows}


def test_every_error_code_in_the_docs_shows_the_sentence_the_api_shows() -> None:
    assert _lifecycle_table() == PUBLIC_MESSAGES


NEVER_ON_A_ROW = {
    "configuration_error",  # stops the process
    "source_error",  # base classes: only their subclasses are raised
    "validation_error",
    "provider_error",
    "malformed_input",  # refused before anything is stored
    "schema_not_migrated",
    "database_unavailable",  # nowhere to write it
    "rate_limiter_unavailable",  # retried by the actor, not written
    "webhook_rejected",  # a forged or malformed webhook, answered 4xx
}


def _codes(cls: type[PipelineError]) -> set[str]:
    found = {cls.code}
    for sub in cls.__subclasses__():
        found |= _codes(sub)
    return found


def test_every_code_the_error_tree_can_write_has_a_public_sentence() -> None:
    assert _codes(PipelineError) - NEVER_ON_A_ROW == set(PUBLIC_MESSAGES)


def test_public_messages_name_no_address_and_fall_back_for_unknown_codes() -> None:
    for message in PUBLIC_MESSAGES.values():
        assert not re.search(r"[0-9]+\.[0-9]+|errno|resolv|loopback", message, re.IGNORECASE)
    assert public_message("source_blocked") == PUBLIC_MESSAGES["source_blocked"]
    assert public_message("something_new") == GENERIC_PUBLIC_MESSAGE
    assert public_message(None) is None
