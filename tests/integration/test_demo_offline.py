"""``make demo`` on a machine that has only Python: in a network namespace with only loopback,
neither this machine's Postgres nor its Redis can be seen, so the Makefile must start embedded
ones (and the S3 server), run the demo to its summary and stop everything it started."""

from __future__ import annotations

import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.sandbox import (
    REPO,
    clean_env,
    in_netns,
    netns_unavailable,
    processes_in,
    run_dir,
    servers_reachable_by,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES = 2
IMAGES_PER_STORE = 2


@pytest.fixture
def small_images(tmp_path: Path, images_dir: Path) -> Path:
    """Two images from each of the first two store folders of the shared corpus."""
    folder = tmp_path / "images"
    for store in sorted(p for p in images_dir.iterdir() if p.is_dir())[:STORES]:
        (folder / store.name).mkdir(parents=True)
        for image in sorted(p for p in store.iterdir() if p.is_file())[:IMAGES_PER_STORE]:
            shutil.copy(image, folder / store.name / image.name)
    return folder


@pytest.mark.timeout(900)
def test_make_demo_with_only_loopback_finishes_and_leaves_no_process(
    tmp_path: Path, small_images: Path
) -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    if not servers_reachable_by(pwd.getpwnam("nobody")):  # as root the servers run as nobody
        pytest.skip("user nobody cannot reach this clone's venv (e.g. a clone under /root)")
    stamp = subprocess.run(
        ["make", "-q", ".venv/.installed"], cwd=REPO, env=clean_env(), check=False
    )
    if stamp.returncode != 0:  # the namespace has no registry to install from
        pytest.fail("the venv is older than the lock file: run make venv first")
    ns_file = tmp_path / "netns"
    with run_dir() as root:
        result = subprocess.run(
            in_netns(f"make demo IMAGES={small_images}", ns_file),
            cwd=REPO,
            env=clean_env(IMAGEOPT_RUN_DIR=str(root)),
            capture_output=True,
            text=True,
            timeout=840,
            check=False,
        )
        services = root / "services"
        leftover_state = sorted(p.name for p in services.iterdir()) if services.is_dir() else []
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "local-services: Postgres: embedded PostgreSQL" in output
    assert "local-services: Redis: embedded Valkey" in output
    total = STORES * IMAGES_PER_STORE
    summary = re.search(r"^all stores: (\d+) items, (\d+) done", result.stdout, re.M)
    assert summary, output[-4000:]
    assert int(summary[1]) == total
    for store in sorted(p.name for p in small_images.iterdir()):
        assert re.search(rf"^{re.escape(store)}\s+\d+\s+{IMAGES_PER_STORE}\s", result.stdout, re.M)
    assert "local-services: stopped the embedded Postgres and Valkey" in output
    assert leftover_state == []
    assert processes_in(ns_file) == []
