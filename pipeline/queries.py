"""Loads the named SQL statements of ``pipeline/sql/queries.sql``.

Format (after procrastinate's ``queries.sql``): each block starts with ``-- name: <name>``,
then a one-line ``--`` description, then the statement with ``%(param)s`` placeholders.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a queries file into ``{name: sql}``.

    Raises:
        ValueError: a name appears twice or a block is empty.
    """
    queries: dict[str, str] = {}
    parts = _NAME.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        sql = "\n".join(lines).strip()
        if not sql:
            raise ValueError(f"query {name} is empty")
        if name in queries:
            raise ValueError(f"query {name} is defined twice")
        queries[name] = sql
    return queries


@cache
def load_queries() -> dict[str, str]:
    """The project's named queries, parsed once per process."""
    text = resources.files("pipeline").joinpath("sql/queries.sql").read_text(encoding="utf-8")
    return parse_queries(text)
