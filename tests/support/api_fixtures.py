"""Fixtures of the api tests, shared (registered by ``pytest_plugins`` in tests/conftest.py): the
api under uvicorn, a repository on the test's schema, and the HTTP clients a test opened closed
after it. A module that needs other settings defines its own ``api_env``; its ``api`` follows.
``repo`` serves every test module, the api's or not: it is on ``db_schema``, the schema
``api_env`` names (a module whose api runs on another schema defines its own ``repo``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.repository import Repository
from tests.conftest import settings_from
from tests.support.api import HIGH_LIMITS, close_tracked, repository, run_api


@pytest.fixture
def api_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The pipeline's test settings with :data:`HIGH_LIMITS`."""
    return {**pipeline_env, **HIGH_LIMITS}


@pytest.fixture
def api(api_env: dict[str, str]) -> Iterator[str]:
    """The api with ``api_env``'s settings; yields ``http://127.0.0.1:PORT``."""
    with run_api(settings_from(api_env)) as base:
        yield base


@pytest.fixture
def repo(db_schema: str) -> Iterator[Repository]:
    """A repository (a pool of 2) on this test's schema, which is the api's; closed after."""
    with repository(db_schema) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _close_tracked_clients() -> Iterator[None]:
    yield
    close_tracked()
