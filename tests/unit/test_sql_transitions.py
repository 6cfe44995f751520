"""Every status-changing UPDATE of ``pipeline/sql/queries.sql`` is a move of the lifecycle.

Pure parsing: each named query that sets an item's ``status`` is read for its target (``SET
status = 'X'``) and its guard (``WHERE ... status = 'Y'``, ``status IN (...)``, or ``status =
ANY(%(param)s)`` whose statuses the Python callers pass), and each ``from → to`` pair must be
in :data:`pipeline.lifecycle.TRANSITIONS`. An UPDATE without a status guard fails too: every
state change is conditional, so running it twice is safe (docs/LIFECYCLE.md).

Job statuses are not checked here: ``refresh_jobs`` derives them from the items, and
``reopen_jobs`` reopens jobs whose items an operator retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from pipeline.lifecycle import TRANSITIONS
from pipeline.queries import load_queries
from pipeline.statuses import ItemStatus

_S = ItemStatus
PARAM_GUARDS: dict[tuple[str, str], frozenset[ItemStatus]] = {
    # (query, parameter) -> the statuses its callers pass
    ("retry_later", "from_statuses"): frozenset({_S.SUBMITTING}),  # workers/creation.py
    # creation (SUBMITTING), polling (PROCESSING), the rescuer's expiry (QUEUED, SUBMITTING,
    # PROCESSING: the status it read from expired_items)
    ("fail_item", "from_statuses"): frozenset({_S.QUEUED, _S.SUBMITTING, _S.PROCESSING}),
    # pipeline/cancellation.py: PENDING/QUEUED/SUBMITTING at once, PROCESSING after the provider
    ("cancel_item", "from_statuses"): frozenset(
        {_S.PENDING, _S.QUEUED, _S.SUBMITTING, _S.PROCESSING}
    ),
}

_UPDATE = re.compile(
    r"UPDATE\s+image_optimization_items\b(?:\s+(?!SET\b)\w+)?\s+SET\s+(?P<set>.*?)"
    r"\s+(?:FROM\s+.*?\s+)?WHERE\s+(?P<where>.*?)(?=\bRETURNING\b|;|\)\s*SELECT\b|$)",
    re.DOTALL | re.IGNORECASE,
)
_TARGET = re.compile(r"(?<![\w.])(?:\w+\.)?status\s*=\s*'(\w+)'", re.IGNORECASE)
_GUARD_ONE = re.compile(r"(?:\b\w+\.)?\bstatus\s*=\s*'(\w+)'", re.IGNORECASE)
_GUARD_IN = re.compile(r"(?:\b\w+\.)?\bstatus\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
_GUARD_PARAM = re.compile(r"(?:\b\w+\.)?\bstatus\s*=\s*ANY\s*\(\s*%\((\w+)\)s", re.IGNORECASE)


@dataclass(frozen=True)
class StatusUpdate:
    query: str
    target: ItemStatus
    sources: frozenset[ItemStatus]
    params: tuple[str, ...]


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def parse_status_updates(queries: dict[str, str]) -> list[StatusUpdate]:
    """The item UPDATEs that set ``status``, with their guards (sources: literal statuses;
    params: the parameters of ``status = ANY(%(param)s)`` guards)."""
    found = []
    for name, sql in queries.items():
        for match in _UPDATE.finditer(_strip_comments(sql)):
            targets = _TARGET.findall(match["set"])
            if not targets:
                continue  # touches other columns only
            assert len(targets) == 1, f"{name}: more than one status set"
            where = match["where"]
            sources = set(_GUARD_ONE.findall(where))
            for listed in _GUARD_IN.findall(where):
                sources.update(re.findall(r"'(\w+)'", listed))
            found.append(
                StatusUpdate(
                    name,
                    ItemStatus(targets[0]),
                    frozenset(ItemStatus(s) for s in sources),
                    tuple(_GUARD_PARAM.findall(where)),
                )
            )
    return found


UPDATES = parse_status_updates(load_queries())


def test_the_parser_finds_every_kind_of_status_update() -> None:
    names = {u.query for u in UPDATES}
    # one of each shape: a literal guard, an IN list, an ANY parameter, UPDATE ... FROM, a CTE
    assert {
        "mark_queued",
        "cancel_job_items",
        "fail_item",
        "fail_pending_many",
        "claim_work_item",
    } <= names
    # and every query that updates items and sets a status (a plain text search) was parsed
    queries = load_queries()
    setting = {
        name
        for name, sql in queries.items()
        if "UPDATE image_optimization_items" in sql and re.search(r"SET\s+status\s*=", sql)
    }
    assert names == setting


@pytest.mark.parametrize("update", UPDATES, ids=lambda u: u.query)
def test_each_status_update_is_guarded_and_moves_along_the_lifecycle(
    update: StatusUpdate,
) -> None:
    sources = set(update.sources)
    for param in update.params:
        assert (update.query, param) in PARAM_GUARDS, (
            f"{update.query}: add the statuses its callers pass in %({param})s to PARAM_GUARDS"
        )
        sources |= PARAM_GUARDS[(update.query, param)]
    assert sources, f"{update.query} sets status without a status guard: not safe to run twice"
    for source in sorted(sources):
        assert update.target in TRANSITIONS[source], (
            f"{update.query}: {source} -> {update.target} is not in the lifecycle"
        )


def test_every_declared_parameter_guard_belongs_to_a_query() -> None:
    used = {(u.query, p) for u in UPDATES for p in u.params}
    assert set(PARAM_GUARDS) == used


def test_an_unguarded_or_forbidden_update_is_caught() -> None:
    queries = {
        "unguarded": "UPDATE image_optimization_items SET status = 'QUEUED' WHERE id = 1;",
        "backwards": (
            "UPDATE image_optimization_items SET status = 'PENDING' "
            "WHERE id = 1 AND status = 'DONE' RETURNING id;"
        ),
    }
    parsed = {u.query: u for u in parse_status_updates(queries)}
    assert parsed["unguarded"].sources == frozenset()
    assert parsed["backwards"].sources == {ItemStatus.DONE}
    assert ItemStatus.PENDING not in TRANSITIONS[ItemStatus.DONE]
