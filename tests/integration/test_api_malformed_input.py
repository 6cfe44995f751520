"""Hostile input against the running api (real Postgres, Redis, S3, over sockets): for every
JSON field, multipart text field, query parameter and integer path parameter that
``api/openapi.yaml`` describes, hostile values (NUL, lone surrogates, integers past
64 bits, ``NaN``, deep nesting, huge strings) are a 4xx naming the field, never a 5xx, and
nothing reaches Postgres. Targets come from the document, so a field added there is attacked
here too; the brief's probes are also sent one by one."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import psycopg
import pytest
import yaml  # type: ignore[import-untyped]  # types-PyYAML is not a dev dependency
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from api.auth import create_api_key
from pipeline.db import create_pool
from pipeline.repository import Repository
from pipeline.validation import MAX_JSON_DEPTH, MAX_TEXT_CHARS
from pipeline.webhooks import new_secret
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api

pytestmark = pytest.mark.integration

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "api" / "openapi.yaml").read_text())
EXAMPLES_PER_TARGET = 12
PLACEHOLDER = "__HOSTILE__"
SIGNED = {("POST", "/api/webhooks/replicate")}
"""Routes whose body is a signed provider webhook (:mod:`api.input_guard`, signed paths)."""
LIMITS = {
    "IMAGEOPT_WEBHOOK_URL": "https://imageopt.example/api/webhooks/replicate",
    "REPLICATE_WEBHOOK_SECRET": new_secret(),
    "IMAGEOPT_API_RATE_PER_MINUTE": "100000",
    "IMAGEOPT_API_READ_RATE_PER_MINUTE": "100000",
    "IMAGEOPT_API_CREATE_RATE_PER_MINUTE": "100000",
    "IMAGEOPT_API_PRESET_WRITES_PER_MINUTE": "100000",
}
_JOB_JSON = {
    "model": "nightmareai/real-esrgan",
    "items": [{"sourceUrl": "https://example.com/a.jpg"}],
}
BASE_JSON: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/jobs"): _JOB_JSON,
    ("POST", "/api/ai-image/jobs"): _JOB_JSON,
    ("POST", "/api/presets"): {"name": "probe", "spec": {"format": "webp", "width": 800}},
    ("PUT", "/api/presets/{name}"): {"spec": {"format": "jpeg", "quality": 80}},
    ("POST", "/ops/login"): {"key": "iok_op_not-a-key"},
    ("POST", "/api/session"): {"key": "iok_store_not-a-key"},
    ("POST", "/api/webhooks/replicate"): {"id": "p1", "status": "succeeded", "output": None},
    ("POST", "/ops/api/retry"): {"itemId": 1, "reason": "probe"},
    ("POST", "/ops/api/cancel"): {"itemId": 1, "reason": "probe"},
    ("POST", "/ops/api/submissions"): {"paused": True, "reason": "probe"},
    ("POST", "/ops/api/stores/{storeId}"): {"weight": 2, "reason": "probe"},
    ("POST", "/ops/api/flags"): {"name": "ONBOARDING_ENABLED", "enabled": True, "reason": "p"},
    ("POST", "/ops/api/models"): {"name": "nightmareai/real-esrgan", "enabled": True},
    ("POST", "/ops/api/rollout"): {"percent": 100, "allowStores": ["shop-1"], "reason": "p"},
    ("POST", "/ops/api/auth-required"): {"enabled": False, "reason": "probe"},
}
"""A valid body per JSON operation: the hostile value is the only thing wrong with it."""
BASE_FORM: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/jobs"): {"model": "nightmareai/real-esrgan"},
    ("POST", "/api/ai-image/jobs"): {"model": "nightmareai/real-esrgan"},
    ("POST", "/api/ai-image/generate"): {"model": "nightmareai/real-esrgan"},
    ("POST", "/api/preview"): {
        "preset": "thumb-400",
        "model": "nightmareai/real-esrgan",
        "params": '{"scale": 2}',
    },
    ("POST", "/api/analyze"): {},
}
"""Valid text fields per multipart operation (an ``image`` file is always added)."""


@dataclass(frozen=True)
class Target:
    """One place a caller can put a value."""

    kind: str  # "json", "form", "query", "path"
    method: str
    path: str
    where: tuple[str | int, ...]  # JSON path; or (name,)
    json_text: bool = False  # a form field holding JSON (described so)

    @property
    def field(self) -> str:
        """The field name the api must report (``items[0].sourceUrl``; ``body`` for the root)."""
        out = ""
        for part in self.where:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out or "body"

    def __str__(self) -> str:
        return f"{self.kind} {self.method} {self.path} {self.field}"


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = SPEC["components"]["schemas"][name]
    return node


def _json_places(schema: dict[str, Any], where: tuple[str | int, ...]) -> list[tuple[Any, ...]]:
    schema = _resolve(schema)
    places: list[tuple[Any, ...]] = [where]
    for name, sub in schema.get("properties", {}).items():
        places += _json_places(sub, (*where, name))
    if schema.get("additionalProperties"):
        places.append((*where, "anyKey"))
    if schema.get("type") == "array":
        places += _json_places(schema["items"], (*where, 0))
    return places


def _parameter(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return dict(SPEC["components"]["parameters"][node["$ref"].rsplit("/", 1)[-1]])
    return node


def _operation_targets(
    method: str, path: str, op: dict[str, Any], shared: list[Any]
) -> list[Target]:
    found: list[Target] = []
    for param in map(_parameter, [*shared, *op.get("parameters", [])]):
        if param["in"] == "query":
            found.append(Target("query", method, path, (param["name"],)))
        elif param["in"] == "path" and param["schema"]["type"] == "integer":
            found.append(Target("path", method, path, (param["name"],)))
    if method == "GET":
        found.append(Target("query", method, path, ("anyName",)))  # unread ones too
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        assert (method, path) in BASE_JSON, f"add a valid body for {method} {path}"
        for where in _json_places(content["application/json"]["schema"], ()):
            found.append(Target("json", method, path, where))
    if "multipart/form-data" in content:
        assert (method, path) in BASE_FORM, f"add valid fields for {method} {path}"
        props = _resolve(content["multipart/form-data"]["schema"])["properties"]
        for name, prop in props.items():
            if prop.get("type") == "string" and prop.get("format") != "binary":
                is_json = "JSON" in prop.get("description", "")
                found.append(Target("form", method, path, (name,), is_json))
    return found


def _targets() -> list[Target]:
    """Every place the document lets a caller put a value."""
    found: list[Target] = []
    for path, item in SPEC["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method != "parameters":
                found += _operation_targets(method.upper(), path, op, shared)
    return found


TARGETS = _targets()


# --- hostile values ----------------------------------------------------------------------------
around = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
nul_text = st.tuples(around, around).map(lambda p: f"{p[0]}\x00{p[1]}")
surrogate_text = st.tuples(around, st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)).map(
    lambda p: p[0] + p[1]
)
huge_text = st.integers(MAX_TEXT_CHARS + 1, 4 * MAX_TEXT_CHARS).map(lambda n: "x" * n)


@st.composite
def json_fragment(draw: st.DrawFn) -> tuple[str, bool]:
    """Raw JSON text of a hostile value, and whether to send the body with raw (CESU-8)
    surrogates rather than ``\\uXXXX`` escapes."""
    kind = draw(st.sampled_from(["nul", "surrogate", "int", "nonfinite", "deep", "huge"]))
    if kind == "nul":
        return json.dumps(draw(nul_text)), False
    if kind == "surrogate":
        raw = draw(st.booleans())
        return json.dumps(draw(surrogate_text), ensure_ascii=not raw), raw
    if kind == "int":
        return draw(st.sampled_from(["", "-"])) + "9" * draw(st.integers(20, 6000)), False
    if kind == "nonfinite":
        return draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"])), False
    if kind == "deep":
        depth = draw(st.integers(MAX_JSON_DEPTH + 1, 5000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return opener * depth + ("1" if opener != "[" else "") + closer * depth, False
    return json.dumps(draw(huge_text)), False


def _put(document: Any, where: tuple[str | int, ...], value: Any) -> Any:
    """``document`` with ``value`` at ``where`` (missing containers created)."""
    if not where:
        return value
    head, rest = where[0], where[1:]
    if isinstance(head, int):
        items = list(document) if isinstance(document, list) else []
        while len(items) <= head:
            items.append({})
        items[head] = _put(items[head], rest, value)
        return items
    mapping = dict(document) if isinstance(document, dict) else {}
    mapping[head] = _put(mapping.get(head), rest, value)
    return mapping


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


PNG = _png()


def _url(target: Target, query: str = "") -> str:
    path = target.path.replace("{jobId}", "1").replace("{itemId}", "1").replace("{name}", "probe")
    return path + (f"?{query}" if query else "")


def _send(client: httpx.Client, target: Target, draw: st.DrawFn) -> tuple[httpx.Response, bool]:
    """Send one hostile request for ``target``; also whether the value was a huge string
    (those may be a 413 for the whole body)."""
    if target.kind == "json":
        fragment, raw = draw(json_fragment())
        body = json.dumps(_put(BASE_JSON[(target.method, target.path)], target.where, PLACEHOLDER))
        text = body.replace(json.dumps(PLACEHOLDER), fragment)
        data = text.encode("utf-8", "surrogatepass" if raw else "strict")
        headers = {"Content-Type": "application/json"}
        response = client.request(target.method, _url(target), content=data, headers=headers)
        return response, len(fragment) > MAX_TEXT_CHARS and fragment.startswith('"')
    if target.kind == "form":
        value: str | bytes = draw(nul_text | huge_text)
        if target.json_text and draw(st.booleans()):
            fragment, raw = draw(json_fragment())
            # raw surrogates are no UTF-8: the form parser reads such a field as Latin-1
            value = ('{"k": ' + fragment + "}").encode(
                "utf-8", "surrogatepass" if raw else "strict"
            )
        fields = {**BASE_FORM[(target.method, target.path)], target.where[0]: value}
        files = [("image", ("a.png", PNG, "image/png"))]
        return client.request(target.method, _url(target), data=fields, files=files), False
    if target.kind == "query":
        value = draw(nul_text | huge_text | surrogate_text)
        query = f"{target.where[0]}={quote_from_bytes(value.encode('utf-8', 'surrogatepass'))}"
        return client.request(target.method, _url(target, query)), False
    digits = "9" * draw(st.integers(20, 6000))
    url = target.path.replace("{" + target.where[0] + "}", digits)
    url = url.replace("{jobId}", "1").replace("{itemId}", "1")
    return client.request(target.method, url), False


def _check(target: Target, response: httpx.Response, huge: bool) -> None:
    assert response.status_code < 500, (str(target), response.text[:300])
    if (target.method, target.path) in SIGNED and target.kind == "json":
        # refused before anything parses the body: no item to finish, or nobody signed it
        refusal = (response.status_code, response.json()["error"]["type"])
        assert refusal in {(400, "invalid_webhook"), (401, "invalid_signature")}, refusal
        return
    if target.kind == "path":
        assert response.status_code == 404, (str(target), response.text[:300])
        return
    expected = {400, 413} if huge else {400}
    assert response.status_code in expected, (str(target), response.text[:300])
    error = response.json()["error"]
    field = error["details"]["field"]
    if target.field == "body":  # the whole body is the value: any path within it
        return
    # deep nesting is named where it got too deep, or "body" when the parser gave up
    named = field == target.field or field.startswith((target.field + "[", target.field + "."))
    assert named or (field == "body" and (huge or target.kind == "json")), (str(target), error)


# --- the tests ---------------------------------------------------------------------------------
@pytest.fixture
def env(pipeline_env: dict[str, str]) -> dict[str, str]:
    return {**pipeline_env, **LIMITS}


@pytest.fixture
def store_key(env: dict[str, str]) -> str:
    pool = create_pool(DATABASE_URL, env["IMAGEOPT_DB_SCHEMA"], max_size=1, name="test")
    key, _ = create_api_key(Repository(pool), "shop-1")
    pool.close()
    return key


def _stored_rows(schema: str) -> tuple[int, int]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        jobs = conn.execute("SELECT count(*) FROM image_optimization_jobs").fetchone()
        items = conn.execute("SELECT count(*) FROM image_optimization_items").fetchone()
    assert jobs is not None
    assert items is not None
    return int(jobs[0]), int(items[0])


def test_the_document_gives_targets_of_every_kind() -> None:
    kinds = {t.kind for t in TARGETS}
    assert kinds == {"json", "form", "query", "path"}
    seed_paths = {t.path for t in TARGETS if t.path.startswith(("/api/ai-image/", "/r2-ai/"))}
    assert seed_paths == {
        "/api/ai-image/generate", "/api/ai-image/usage", "/api/ai-image/jobs",
        "/api/ai-image/jobs/{jobId}", "/api/ai-image/jobs/{jobId}/cancel",
        "/r2-ai/results/{itemId}", "/r2-ai/uploads/{itemId}",
    }  # fmt: skip
    fields = {t.field for t in TARGETS if t.kind == "json"}
    assert {"body", "prompt", "params", "items[0].sourceUrl", "items[0].prompt"} <= fields


def _attack(client: httpx.Client, target: Target) -> None:
    """:data:`EXAMPLES_PER_TARGET` hostile requests at ``target``, each checked."""

    @given(data=st.data())
    @settings(max_examples=EXAMPLES_PER_TARGET, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def attack(data: st.DataObject) -> None:
        response, huge = _send(client, target, data.draw)
        _check(target, response, huge)

    attack()


def test_hostile_values_in_every_documented_field_are_a_4xx_naming_it(
    env: dict[str, str], store_key: str
) -> None:
    tried = []
    with (
        run_api(settings_from(env)) as base,
        httpx.Client(
            base_url=base, timeout=60, headers={"Authorization": f"Bearer {store_key}"}
        ) as client,
    ):
        for target in TARGETS:
            _attack(client, target)
            tried.append(str(target))
    assert len(tried) == len(TARGETS)
    assert _stored_rows(env["IMAGEOPT_DB_SCHEMA"]) == (0, 0)  # nothing reached Postgres


@dataclass(frozen=True)
class Probe:
    """One of the brief's malformed requests and what it must get."""

    url: str
    body: bytes | None  # JSON, POSTed; None: a GET
    status: int
    field: str  # the field the 400 names ("" for a 404)


JOB = b'"items": [{"sourceUrl": "https://example.com/a.jpg"}]'
PROBES = {
    "deep_nesting": Probe(
        "/api/jobs", b'{"model": "x", "items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400, "body",
    ),
    "5000_digit_integer": Probe(
        "/api/jobs", b'{"params": {"scale": ' + b"9" * 5000 + b"}, " + JOB + b"}",
        400, "params.scale",
    ),
    "nul_in_prompt": Probe(
        "/api/jobs", b'{"model": "google/nano-banana", "prompt": "white\\u0000", ' + JOB + b"}",
        400, "prompt",
    ),
    "nul_in_source_url": Probe(
        "/api/jobs", b'{"items": [{"sourceUrl": "https://example.com/a\\u0000.jpg"}]}',
        400, "items[0].sourceUrl",
    ),
    "lone_surrogate_escaped": Probe(
        "/api/jobs", b'{"model": "google/nano-banana", "prompt": "\\ud800", ' + JOB + b"}",
        400, "prompt",
    ),
    "lone_surrogate_raw_bytes": Probe(
        "/api/jobs", b'{"model": "google/nano-banana", "prompt": "\xed\xa0\x80", ' + JOB + b"}",
        400, "prompt",
    ),
    "nul_in_query": Probe("/api/items/1/result?download=%00", None, 400, "download"),
    "lone_surrogate_in_query": Probe(
        "/api/items/1/result?download=%ED%A0%80", None, 400, "download"
    ),
    "huge_path_id": Probe("/api/jobs/" + "9" * 5000, None, 404, ""),
}  # fmt: skip


@pytest.mark.parametrize("probe", list(PROBES.values()), ids=list(PROBES))
def test_each_named_probe_is_refused_naming_its_field(
    env: dict[str, str], store_key: str, probe: Probe
) -> None:
    with (
        run_api(settings_from(env)) as base,
        httpx.Client(
            base_url=base, timeout=60, headers={"Authorization": f"Bearer {store_key}"}
        ) as client,
    ):
        if probe.body is None:
            response = client.get(probe.url)
        else:
            response = client.post(
                probe.url, content=probe.body, headers={"Content-Type": "application/json"}
            )
    assert response.status_code == probe.status, response.text[:300]
    error = response.json()["error"]
    if probe.field:
        assert error["type"] == "validation_error"
        assert error["details"] == {"field": probe.field}
        assert probe.field in error["message"]
    assert _stored_rows(env["IMAGEOPT_DB_SCHEMA"]) == (0, 0)


def test_a_nul_in_a_multipart_prompt_is_a_400_naming_it(
    env: dict[str, str], store_key: str
) -> None:
    with run_api(settings_from(env)) as base:
        response = httpx.post(
            f"{base}/api/jobs",
            headers={"Authorization": f"Bearer {store_key}"},
            data={"model": "google/nano-banana", "prompt": "white\x00background"},
            files=[("image", ("a.png", PNG, "image/png"))],
            timeout=60,
        )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "prompt"}
    assert _stored_rows(env["IMAGEOPT_DB_SCHEMA"]) == (0, 0)
