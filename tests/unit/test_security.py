"""Security checks that need no services: SQL is parameterized everywhere, and
provider output downloads cannot be pointed at internal addresses.

The other checks live where their subject is: the SSRF guard (no connection to a refused
address, names resolved once and pinned) in tests/unit/test_ssrf.py; redirects limited and
re-vetted in tests/integration/test_fetch.py; the private bucket, anonymous GET refused and
bounded presigned expiry in tests/integration/test_storage.py; the token never in any output
in tests/faults (every scenario scans all captured output).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import httpx
import pytest

from pipeline.errors import OutputInvalid
from pipeline.provider import ProviderClient

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "pipeline" / "sql" / "queries.sql"
PACKAGES = ("pipeline", "scheduler", "workers", "api", "cli", "devstack", "emulator")
PY_FILES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _unsafe_sql_argument(node: ast.expr) -> str | None:
    """Why the first argument of ``execute`` is built by string formatting, or None."""
    if isinstance(node, ast.JoinedStr):
        names = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
        if all(isinstance(n, ast.Name) and n.id.isupper() for n in names):
            return None  # only module constants (e.g. LISTEN {CHANNEL})
        return "f-string with runtime values"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return "string built with % or +"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
    ):
        return "str.format"
    return None


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_is_built_by_string_formatting(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executemany")
            and node.args
        ):
            reason = _unsafe_sql_argument(node.args[0])
            if reason:
                bad.append(f"line {node.lineno}: {reason}")
    assert not bad, bad


def test_named_queries_take_values_only_as_named_placeholders() -> None:
    text = re.sub(r"--.*", "", QUERIES.read_text())
    assert "{" not in text, "format braces in queries.sql"
    assert not re.findall(r"%[^%(]", text), "positional or bare placeholders in queries.sql"


def _refusing_client(**kwargs: object) -> ProviderClient:
    def no_traffic(request: httpx.Request) -> httpx.Response:
        pytest.fail(f"a request was sent to {request.url.host}")

    return ProviderClient(
        "https://api.provider.test/v1",
        "r8_secret",
        transport=httpx.MockTransport(no_traffic),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://localhost:6379/",
        "http://10.0.0.1/output.png",
        "http://replicate.delivery/pbxt/out.png",  # the right host but not https
        "https://replicate.delivery.evil.test/out.png",
        "https://evilreplicate.delivery/out.png",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
        "/relative/out.png",
    ],
)
def test_an_output_url_off_the_provider_hosts_is_refused_before_any_connection(url: str) -> None:
    with _refusing_client() as client, pytest.raises(OutputInvalid):
        client.download(url, max_bytes=1000)


@pytest.mark.parametrize(
    "url",
    [
        "https://replicate.delivery/pbxt/abc/out.png",
        "https://pbxt.replicate.delivery/abc/out.png",
        "https://api.provider.test/files/abc/output.png",
    ],
)
def test_outputs_on_replicate_delivery_or_the_api_origin_are_downloaded(url: str) -> None:
    seen: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        assert "Authorization" not in request.headers
        return httpx.Response(200, content=b"png")

    transport = httpx.MockTransport(serve)
    with ProviderClient("https://api.provider.test/v1", "r8_secret", transport=transport) as c:
        assert c.download(url, max_bytes=10) == b"png"
    assert seen == [url]
