"""Who is calling: a store (an API key) or a console guest (the seed's ``guest_id`` cookie).

* **API keys** look like ``iok_<8 hex prefix>_<43 url-safe chars>`` (256 random bits) and are
  sent as ``Authorization: Bearer <key>``. Only their SHA-256 is stored: with that much entropy
  a slow password hash adds nothing (no dictionary to try), and a lookup by hash is one index
  probe. The prefix is stored in clear so ops can tell keys apart.
* **Guests** get a ``guest_id`` cookie holding a random token (256 bits, ``HttpOnly``,
  ``SameSite=Lax``, ``Secure`` on https); the row holds its SHA-256 and a public UUID, which
  is the owner id of the guest's jobs. Sessions slide: each use (at most once a minute)
  extends them by ``IMAGEOPT_API_GUEST_SESSION_DAYS``.

* **Store sessions**: a person signs in to the console with the store's key (``POST
  /api/session``, :mod:`api.store_session`); the ``store_session`` cookie then stands for the
  key (same store, same limits) until it expires, the person signs out or the key is revoked.

A bearer header always wins over a cookie, a store session over a guest cookie; a request with
none is anonymous.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pipeline.repository import Repository, Row

KEY_PREFIX = "iok_"
GUEST_COOKIE = "guest_id"
STORE_COOKIE = "store_session"
MAX_TOKEN_CHARS = 200
"""A key or cookie longer than this is none of ours (keys have 56 characters, tokens 43) and
is refused unhashed."""
TOUCH_EVERY = timedelta(minutes=1)
"""Usage timestamps are written at most this often per key or session (spares writes)."""

OwnerType = Literal["store", "guest"]


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    Attributes:
        owner_type: ``store`` (API key) or ``guest`` (console cookie).
        owner_id: the store id, or the guest's public UUID.
        store_id: the store the caller's jobs run under (the guest store for guests).
        throttle_key: the key its request limits are counted under (no secret in it).
        key_id: the id of the store's API key (a bearer key or the one a console session was
            opened with); None for guests.
    """

    owner_type: OwnerType
    owner_id: str
    store_id: str
    throttle_key: str
    key_id: int | None = None

    def owns(self, owner_type: str | None, owner_id: str | None, store_id: str) -> bool:
        """Whether this caller may see a job with these owner columns.

        A store sees every job of its store (upstream inserts included) except guests' jobs; a
        guest sees only its own jobs.
        """
        if self.owner_type == "guest":
            return owner_type == "guest" and owner_id == self.owner_id
        return store_id == self.store_id and owner_type != "guest"


def hash_secret(secret: str) -> bytes:
    """SHA-256 of a key or cookie token (what the tables store)."""
    return hashlib.sha256(secret.encode()).digest()


def new_api_key() -> tuple[str, str]:
    """A fresh API key and its public prefix: ``(key, prefix)``."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def create_api_key(repo: Repository, store_id: str, name: str | None = None) -> tuple[str, int]:
    """Create a key for a store; returns ``(key, key_id)``. The key is never stored or logged.

    Raises:
        ValueError: empty store id.
    """
    if not store_id.strip():
        raise ValueError("store id must not be empty")
    key, prefix = new_api_key()
    row = repo.api_insert_key(store_id, prefix, hash_secret(key), name)
    return key, int(row["id"])


def caller_from_key(repo: Repository, key: str) -> Caller | None:
    """The store caller of an API key, or None when the key is unknown or revoked."""
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_TOKEN_CHARS:
        return None
    return _store_caller(repo, repo.api_find_key(hash_secret(key)))


def caller_from_store_session(repo: Repository, token: str) -> Caller | None:
    """The store caller of a ``store_session`` cookie token, as its key's: None when the session
    is unknown or expired, or its key revoked."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return _store_caller(repo, repo.api_find_store_session(hash_secret(token)))


def _store_caller(repo: Repository, row: Row | None) -> Caller | None:
    if row is None:
        return None
    last = row["last_used_at"]
    if last is None or last < datetime.now(UTC) - TOUCH_EVERY:
        repo.api_touch_key(int(row["id"]))
    key_id = int(row["id"])
    return Caller("store", str(row["store_id"]), str(row["store_id"]), f"key-{key_id}", key_id)


def caller_from_guest_token(
    repo: Repository, token: str, guest_store: str, ttl_seconds: float
) -> Caller | None:
    """The guest of a ``guest_id`` cookie, or None when unknown or expired."""
    if not token or len(token) > 200:
        return None
    row = repo.api_find_guest(hash_secret(token))
    if row is None:
        return None
    guest_id = str(row["id"])
    if row["last_seen_at"] < datetime.now(UTC) - TOUCH_EVERY:
        repo.api_touch_guest(guest_id, ttl_seconds)
    return Caller("guest", guest_id, guest_store, f"guest-{guest_id}")


def new_guest(repo: Repository, guest_store: str, ttl_seconds: float) -> tuple[Caller, str]:
    """Create a guest session; returns the caller and the cookie token (shown once)."""
    token = secrets.token_urlsafe(32)
    guest_id = str(uuid.uuid4())
    repo.api_insert_guest(guest_id, hash_secret(token), ttl_seconds)
    return Caller("guest", guest_id, guest_store, f"guest-{guest_id}"), token


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
