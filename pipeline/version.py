"""The installed version of imageopt (the User-Agent we send, the build-info metric)."""

from __future__ import annotations

import functools
import importlib.metadata


@functools.cache
def package_version() -> str:
    """The ``imageopt`` distribution's version, e.g. ``0.1.0``; ``0.0.0`` when it is not
    installed (a source tree on ``PYTHONPATH``)."""
    try:
        return importlib.metadata.version("imageopt")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"
