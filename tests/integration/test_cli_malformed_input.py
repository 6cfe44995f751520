"""``imageopt submit`` with hostile input (typer's runner, in process, real Postgres): a NUL,
a lone surrogate, bytes that are no UTF-8, a number past its column or a hostile ``params``
value in any CSV column or option is a one-line error naming where it was, exit code 2, no
traceback, and nothing is written."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.app import app
from pipeline.validation import MAX_TEXT_CHARS
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration

URL = "https://example.com/a.jpg"
COLUMNS = ("source_url", "prompt", "model", "params", "priority")


def _jobs(schema: str) -> int:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        row = conn.execute("SELECT count(*) FROM image_optimization_jobs").fetchone()
    assert row is not None
    return int(row[0])


def _csv(row: dict[str, str]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerow({"source_url": URL, **row})
    return out.getvalue().encode("utf-8", "surrogatepass")  # a lone surrogate: no UTF-8


def _submit(env: dict[str, str], path: Path, *options: str) -> tuple[int, str, bool]:
    result = CliRunner().invoke(app, ["submit", str(path), "--store", "shop-1", *options], env=env)
    clean = result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.stderr, clean


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ({"prompt": "white\x00background"}, "prompt contains a NUL"),
        ({"source_url": URL + "\x00"}, "source_url contains a NUL"),
        ({"model": "nightmareai/\x00"}, "model contains a NUL"),
        ({"params": '{"scale": "\\u0000"}'}, "params.scale contains a NUL"),
        ({"params": '{"scale": ' + "9" * 5000 + "}"}, "params.scale is a number outside"),
        ({"params": "[" * 50_000 + "]" * 50_000}, "params is nested deeper"),
        ({"priority": "99999999999"}, "priority is outside"),
        ({"prompt": "\udcff"}, "not UTF-8"),
    ],
)
def test_a_hostile_csv_cell_is_a_one_line_error_with_exit_code_2(
    pipeline_env: dict[str, str], db_schema: str, tmp_path: Path, row: dict[str, str], named: str
) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(_csv(row))
    code, stderr, clean = _submit(pipeline_env, path)
    assert (code, clean) == (2, True), stderr
    assert named in stderr
    assert stderr.startswith("error: ")
    assert stderr.count("\n") == 1  # one line, no traceback
    assert _jobs(db_schema) == 0


def test_hostile_options_are_refused_before_anything_is_written(
    pipeline_env: dict[str, str], db_schema: str, tmp_path: Path
) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(_csv({}))
    for options, named in (
        (["--prompt", "\udcff"], "--prompt contains a lone surrogate"),  # argv bytes, no UTF-8
        (["--param", 'scale="\\u0000"'], "--param scale contains a NUL"),
        (["--param", "scale=" + "9" * 5000], "--param scale is a number outside"),
        (["--priority", str(2**40)], "--priority is outside"),
    ):
        code, stderr, clean = _submit(pipeline_env, path, *options)
        assert (code, clean) == (2, True), stderr
        assert named in stderr
    assert _jobs(db_schema) == 0


hostile_cells = st.one_of(
    st.tuples(st.text(max_size=5), st.text(max_size=5)).map(lambda p: f"{p[0]}\x00{p[1]}"),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.integers(MAX_TEXT_CHARS + 1, 3 * MAX_TEXT_CHARS).map(lambda n: "x" * n),
)


def test_any_hostile_cell_in_any_column_is_exit_code_2_and_writes_nothing(
    pipeline_env: dict[str, str], db_schema: str, tmp_path: Path
) -> None:
    path = tmp_path / "items.csv"

    @given(column=st.sampled_from(COLUMNS), cell=hostile_cells)
    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def attack(column: str, cell: str) -> None:
        value = json.dumps({"k": cell}) if column == "params" else cell
        path.write_bytes(_csv({column: value}))
        code, stderr, clean = _submit(pipeline_env, path)
        assert (code, clean) == (2, True), stderr

    attack()
    assert _jobs(db_schema) == 0
