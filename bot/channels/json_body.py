"""Reading a JSON object from a browser's request, for the web chat and the operator console."""

from __future__ import annotations

import json

from aiohttp import web


def json_error(error: type[web.HTTPException], message: str) -> web.HTTPException:
    """An HTTP error whose body is {"error": message}, as the pages' scripts read it."""
    return error(text=json.dumps({"error": message}), content_type="application/json")


async def json_object(request: web.Request, max_body: int) -> dict[str, object]:
    """The request's body as a JSON object; 413 past `max_body` bytes, 400 when it is not one."""
    if request.content_length is not None and request.content_length > max_body:
        raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=request.content_length)
    try:
        body = await request.json()
    except ValueError:
        raise json_error(web.HTTPBadRequest, "body must be JSON") from None
    if not isinstance(body, dict):
        raise json_error(web.HTTPBadRequest, "body must be a JSON object")
    return body
