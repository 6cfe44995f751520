"""The emulator's model routes: ``GET /v1/models/{owner}/{name}`` and its versions.

JSON shapes as on https://replicate.com/docs/reference/http#models.get and
``#models.versions.list``: the official client's ``replicate.models.get("owner/name")`` and
``model.versions.list()`` read them. Each allowlisted model has one version: its pinned id,
or for an official model (no pinned version) a stable id derived from its name, accepted by
``POST /v1/predictions`` like any other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.allowlist import ModelSpec

Handler = Callable[[Request], Awaitable[Response]]

VERSION_CREATED_AT = "2024-01-01T00:00:00.000000Z"
"""The fixed creation time of every emulated version."""


def version_id(spec: ModelSpec) -> str:
    """The model's version id: the pinned one, else the SHA-256 of its name (64 hex digits,
    the shape of Replicate's ids)."""
    return spec.version or hashlib.sha256(spec.name.encode()).hexdigest()


def version_json(spec: ModelSpec) -> dict[str, Any]:
    """A version object (``id``, ``created_at``, ``cog_version``, ``openapi_schema``)."""
    return {
        "id": version_id(spec),
        "created_at": VERSION_CREATED_AT,
        "cog_version": "0.9.0",
        "openapi_schema": {"info": {"title": spec.name}, "components": {"schemas": {}}},
    }


def model_json(spec: ModelSpec, base_url: str) -> dict[str, Any]:
    """A model object as ``GET /v1/models/{owner}/{name}`` answers it."""
    owner, _, name = spec.name.partition("/")
    return {
        "url": f"{base_url}/{spec.name}",
        "owner": owner,
        "name": name,
        "description": f"emulated {spec.kind} model (classical image operations, not AI)",
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": 0,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": version_json(spec),
    }


def _not_found(detail: str) -> Response:
    return JSONResponse({"title": "Not found", "detail": detail, "status": 404}, status_code=404)


def model_routes(
    allowlist: Mapping[str, ModelSpec], wrap: Callable[[Handler], Handler]
) -> list[Route]:
    """The three model routes, each wrapped by ``wrap`` (auth, read budget, faults, counters).

    Args:
        allowlist: the models this emulator serves, by ``owner/name``.
        wrap: the emulator's API decorator for the read budget.
    """

    def spec_of(request: Request) -> ModelSpec | None:
        return allowlist.get(f"{request.path_params['owner']}/{request.path_params['name']}")

    @wrap
    async def get_model(request: Request) -> Response:
        spec = spec_of(request)
        if spec is None:
            return _not_found("model not found")
        return JSONResponse(model_json(spec, str(request.base_url).rstrip("/")))

    @wrap
    async def list_versions(request: Request) -> Response:
        spec = spec_of(request)
        if spec is None:
            return _not_found("model not found")
        return JSONResponse({"next": None, "previous": None, "results": [version_json(spec)]})

    @wrap
    async def get_version(request: Request) -> Response:
        spec = spec_of(request)
        if spec is None or request.path_params["version_id"] != version_id(spec):
            return _not_found("version not found")
        return JSONResponse(version_json(spec))

    return [
        Route("/v1/models/{owner}/{name}", get_model, methods=["GET"]),
        Route("/v1/models/{owner}/{name}/versions", list_versions, methods=["GET"]),
        Route("/v1/models/{owner}/{name}/versions/{version_id}", get_version, methods=["GET"]),
    ]
