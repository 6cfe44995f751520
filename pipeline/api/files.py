"""Owner-gated delivery of an item's input and result (seed 002 §5, "R2 owner-gating").

The bucket stays private: the api checks the caller owns the item's job (401 anonymous, 403
another owner), then streams the object from storage with ``Cache-Control: private``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.api.context import ApiContext, blocking
from pipeline.api.envelope import ApiError
from pipeline.api.jobs import path_id
from pipeline.storage import ObjectNotFound
from pipeline.uploads import upload_key_of

CACHE_CONTROL = "private, max-age=3600"
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


async def _serve(request: Request, kind: str) -> Response:
    ctx: ApiContext = request.app.state.ctx
    caller = await ctx.caller(request)
    assert caller is not None
    await ctx.throttle(caller)
    item_id = path_id(request, "item_id")
    row = await blocking(ctx.repo.api_get_item, item_id)
    if row is None:
        raise ApiError(404, "not_found", f"item {item_id} not found")
    if not caller.owns(row["owner_type"], row["owner_id"], row["store_id"]):
        raise ApiError(403, "forbidden", f"item {item_id} belongs to another owner")
    if kind == "result":
        key = row["output_key"] if row["status"] == "DONE" else None
        if not key:
            raise ApiError(
                404, "not_found", f"item {item_id} has no result (status {row['status']})"
            )
    else:
        key = row["input_key"] or upload_key_of(str(row["source_url"]), ctx.storage.bucket)
        if not key:
            raise ApiError(404, "not_found", f"item {item_id} has no stored input yet")
    limit = max(ctx.settings.max_output_bytes, ctx.settings.max_input_bytes)
    try:
        info = await blocking(ctx.storage.stat, key)
        if info is None:
            raise ObjectNotFound(key)
        data = await blocking(lambda: ctx.storage.get_bytes(key, max_bytes=limit))
    except ObjectNotFound as exc:
        raise ApiError(
            404, "not_found", f"the {kind} of item {item_id} is no longer stored"
        ) from exc
    ext = _EXTENSIONS.get(info.content_type, "bin")
    disposition = "attachment" if request.query_params.get("download") == "1" else "inline"
    return Response(
        data,
        media_type=info.content_type,
        headers={
            "Cache-Control": CACHE_CONTROL,
            "Content-Disposition": f'{disposition}; filename="item-{item_id}-{kind}.{ext}"',
        },
    )


async def item_input(request: Request) -> Response:
    """``GET /api/items/{id}/input``: the normalized input, or the upload before that exists."""
    return await _serve(request, "input")


async def item_result(request: Request) -> Response:
    """``GET /api/items/{id}/result[?download=1]``: the final image."""
    return await _serve(request, "result")


ROUTES = [
    Route("/api/items/{item_id:int}/input", item_input, methods=["GET"]),
    Route("/api/items/{item_id:int}/result", item_result, methods=["GET"]),
]
