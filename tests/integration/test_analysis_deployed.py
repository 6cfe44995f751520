"""Image analysis where it is deployed: with the ``faces`` extra (the Docker image ships it:
requirements.lock, checked by tests/unit/test_lock_files.py) faces are counted; without it,
an ``imageopt api`` process answers which check it could not run instead of "no faces".

The api without OpenCV is a real process whose ``PYTHONPATH`` starts with a ``cv2`` package
that fails to import, as a missing extra does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import running_stack
from tests.conftest import settings_from
from tests.integration.test_api import guest
from tests.support.api import run_api

pytestmark = pytest.mark.integration

PORTRAIT = "store-portraits/portrait-man-tshirt.jpg"


@pytest.fixture
def api_without_opencv(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    shadow = tmp_path / "shadow" / "cv2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        'raise ImportError("no module named cv2 (no faces extra)")\n'
    )
    paths = [str(shadow.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, **pipeline_env, "PYTHONPATH": os.pathsep.join(paths)}
    with running_stack(env, tmp_path / "logs") as processes:
        yield processes.start_api()


def _analyze(base: str, data: bytes) -> dict[str, object]:
    response = guest(base).post("/api/analyze", files={"image": ("p.jpg", data, "image/jpeg")})
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def test_without_the_faces_extra_the_analysis_names_the_check_it_could_not_run(
    api_without_opencv: str, images_dir: Path
) -> None:
    analysis = _analyze(api_without_opencv, (images_dir / PORTRAIT).read_bytes())
    assert analysis["checksNotRun"] == ["faces"]
    assert analysis["faces"] is None
    assert str(analysis["faceDetector"]).startswith("no detector")
    reason = analysis["recommendation"]["modelReason"]  # type: ignore[index]
    assert reason.startswith("faces not checked"), reason


def test_with_the_faces_extra_every_check_runs(
    pipeline_env: dict[str, str], images_dir: Path
) -> None:
    with run_api(settings_from(pipeline_env)) as base:
        analysis = _analyze(base, (images_dir / PORTRAIT).read_bytes())
    assert analysis["checksNotRun"] == []
    assert isinstance(analysis["faces"], int)
    assert str(analysis["faceDetector"]).startswith("opencv ")
