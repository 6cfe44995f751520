"""The consoles' session cookie (:class:`api.sessions.SessionCookie`), pure logic: its
attributes on http and https, clearing it, and which cookie values are hashed at all."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.auth import MAX_TOKEN_CHARS, hash_secret
from api.sessions import SessionCookie, new_token

COOKIE = SessionCookie("store_session", "/")


def _request(scheme: str, cookie: str = "") -> Request:
    headers = [(b"host", b"console.test")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return Request({"type": "http", "scheme": scheme, "method": "GET", "path": "/",
                    "headers": headers, "query_string": b""})  # fmt: skip


def _set_cookie(scheme: str, token: str | None) -> str:
    response = Response()
    COOKIE.set(_request(scheme), response, token, 3600)
    return response.headers["set-cookie"]


def test_the_cookie_is_httponly_strict_and_secure_only_on_https() -> None:
    plain = _set_cookie("http", "tok")
    assert plain.startswith("store_session=tok;")
    for attribute in ("HttpOnly", "Max-Age=3600", "Path=/", "SameSite=strict"):
        assert attribute in plain
    assert "Secure" not in plain
    assert "Secure" in _set_cookie("https", "tok")


def test_clearing_the_cookie_expires_it_on_its_path() -> None:
    cleared = _set_cookie("http", None)
    assert cleared.startswith('store_session="";')
    assert "Max-Age=0" in cleared
    assert "Path=/" in cleared


def test_only_a_plausible_token_is_hashed() -> None:
    token, digest = new_token()
    assert len(token) == 43
    assert digest == hash_secret(token)
    assert COOKIE.token_hash(_request("http", f"store_session={token}")) == digest
    assert COOKIE.token_hash(_request("http")) is None
    too_long = "x" * (MAX_TOKEN_CHARS + 1)
    assert COOKIE.token_hash(_request("http", f"store_session={too_long}")) is None
