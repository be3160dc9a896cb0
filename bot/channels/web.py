"""Web chat at `/`: a single page that talks to the dialogue core through a small JSON API.

A browser is identified by a random cookie; nothing else about the person is stored.
"""

from __future__ import annotations

import logging
import re
import secrets
from importlib import resources

from aiohttp import web

from bot.channels.json_body import json_object
from bot.dialogue import Incoming
from bot.service import Service
from db.engine import DATABASE_ERRORS

log = logging.getLogger(__name__)

CHANNEL = "web"
COOKIE = "supportbot_session"
MAX_BODY = 200_000
MAX_ID = 128  # characters of a client message id (the database keeps 128)
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")

_SERVICE = web.AppKey("webchat_service", Service)

# What the page shows when the database fails (the messages themselves are still answered without it).
ERRORS = {
    "forget": "Could not delete your data: the service cannot reach its records right now. Please try again.",
    "reset": "Could not start over: the service cannot reach its records right now. Please try again.",
}


def _session_id(request: web.Request) -> str | None:
    value = request.cookies.get(COOKIE, "")
    return value if 16 <= len(value) <= 64 and value.isalnum() else None


def _language(request: web.Request) -> str | None:
    """The browser's first language tag, if it is one that fits the profile (16 characters)."""
    tag = request.headers.get("Accept-Language", "en").split(",")[0].split(";")[0].strip()
    return tag if len(tag) <= 16 and _LANGUAGE_TAG.match(tag) else None


def secure_cookies(public_url: str | None) -> bool:
    """Cookies are marked Secure (sent over HTTPS only) when the service's external URL is HTTPS,
    as behind the TLS proxy the deployment puts in front; plain http://127.0.0.1:8080 keeps them usable."""
    return (public_url or "").lower().startswith("https://")


def _with_session(request: web.Request, response: web.Response, session_id: str) -> web.Response:
    secure = secure_cookies(request.app[_SERVICE].settings.public_url)
    response.set_cookie(COOKIE, session_id, max_age=365 * 24 * 3600, httponly=True, samesite="Strict", secure=secure)
    return response


async def page(_request: web.Request) -> web.Response:
    html = resources.files("bot.channels.static").joinpath("webchat.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html")


async def message(request: web.Request) -> web.Response:
    """POST {"text": ..., "id": optional client message id} -> {"reply": ..., "level": ...}."""
    body = await json_object(request, MAX_BODY)
    text, client_id = body.get("text"), body.get("id")
    if not isinstance(text, str):
        return web.json_response({"error": "'text' must be a string"}, status=400)
    if client_id is not None and (not isinstance(client_id, str | int) or len(str(client_id)) > MAX_ID):
        return web.json_response(
            {"error": f"'id' must be a string or number of at most {MAX_ID} characters"}, status=400
        )
    session_id = _session_id(request) or secrets.token_hex(16)
    service = request.app[_SERVICE]
    result = await service.dialogue.handle(
        Incoming(
            CHANNEL,
            session_id,
            text,
            channel_message_id=str(client_id) if client_id is not None else None,
            locale=_language(request),
        )
    )
    payload = {"reply": result.reply, "outcome": result.outcome, "level": result.level.name.lower()}
    return _with_session(request, web.json_response(payload), session_id)


def _database_failed(what: str) -> web.Response:
    """A 503 whose error the page shows: the person must know their request did not happen."""
    log.exception("database failed: web chat %s", what)
    return web.json_response({"error": ERRORS[what]}, status=503)


async def reset(request: web.Request) -> web.Response:
    session_id = _session_id(request)
    if session_id:
        try:
            await request.app[_SERVICE].dialogue.reset(CHANNEL, session_id)
        except DATABASE_ERRORS:
            return _database_failed("reset")
    return web.json_response({"ok": True})


async def forget(request: web.Request) -> web.Response:
    session_id = _session_id(request)
    try:
        deleted = bool(session_id) and await request.app[_SERVICE].dialogue.forget(CHANNEL, session_id)
    except DATABASE_ERRORS:
        return _database_failed("forget")  # the cookie stays, so that trying again deletes the same data
    response = web.json_response({"deleted": deleted})
    response.del_cookie(COOKIE)
    return response


def mount(app: web.Application, service: Service) -> None:
    app[_SERVICE] = service
    app.router.add_get("/", page)
    app.router.add_post("/chat/message", message)
    app.router.add_post("/chat/reset", reset)
    app.router.add_post("/chat/forget", forget)
