"""Owner-gated delivery of an item's input and result (seed 002 §5, "R2 owner-gating").

The bucket stays private: the api checks the caller owns the item's job (401 anonymous, 403
another owner), then streams the object from storage with ``Cache-Control: private``, in
chunks of :data:`CHUNK_BYTES` (memory per download stays one chunk, whatever the object's
size). Why not a redirect to a presigned URL: the browser would then need to reach the bucket
(often on an internal network), the CSP's ``img-src`` would have to name it, the download's
file name (``Content-Disposition``) would be lost, and the URL, a bearer credential for its
lifetime, would end up in browser history and proxies' logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from api.admission import ITEM, admit
from api.context import blocking
from api.envelope import ApiError
from api.views import input_state, result_state
from pipeline.images import format_of_content_type
from pipeline.storage import ObjectNotFound, ObjectStream
from pipeline.uploads import upload_key_of

CACHE_CONTROL = "private, max-age=3600"
CHUNK_BYTES = 256 * 1024
"""Bytes read from storage and written to the client at a time (one thread hop per chunk)."""


async def _serve(request: Request, kind: str) -> Response:
    admission = await admit(request, owned=ITEM)
    ctx, item_id, row = admission.ctx, admission.resource_id, admission.row
    assert row is not None  # owned: the row was loaded
    upload = upload_key_of(str(row["source_url"]), ctx.storage.bucket)
    if kind == "result":
        available, expired = result_state(row)
        key = row["output_key"]
    else:
        available, expired = input_state(row, has_upload=upload is not None)
        key = row["input_key"] or upload
    if expired:
        raise ApiError(404, "not_found", f"the {kind} of item {item_id} expired (retention)")
    if not available:
        what = f"no result (status {row['status']})" if kind == "result" else "no stored input yet"
        raise ApiError(404, "not_found", f"item {item_id} has {what}")
    limit = max(ctx.settings.max_output_bytes, ctx.settings.max_input_bytes)
    try:
        stream = await blocking(lambda: ctx.storage.open_stream(key, max_bytes=limit))
    except ObjectNotFound as exc:
        raise ApiError(
            404, "not_found", f"the {kind} of item {item_id} is no longer stored"
        ) from exc
    fmt = format_of_content_type(stream.content_type)
    ext = fmt.extension if fmt is not None else "bin"
    disposition = "attachment" if request.query_params.get("download") == "1" else "inline"
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "Content-Length": str(stream.size),
        "Content-Disposition": f'{disposition}; filename="item-{item_id}-{kind}.{ext}"',
    }
    if request.method == "HEAD":
        stream.close()
        return Response(media_type=stream.content_type, headers=headers)
    return StreamingResponse(relay(stream), media_type=stream.content_type, headers=headers)


async def relay(stream: ObjectStream) -> AsyncIterator[bytes]:
    """The object's chunks, each read in the thread pool; the connection is released at the
    end, on a transfer error, and when the client goes away (the generator is closed).

    A transfer that breaks after the headers cannot become an error envelope: the response
    ends short of its ``Content-Length``, which every HTTP client reports as an error.
    """
    chunks = stream.chunks(CHUNK_BYTES)
    try:
        while (chunk := await blocking(next, chunks, None)) is not None:
            yield chunk
    finally:
        stream.close()


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
