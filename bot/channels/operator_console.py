"""The operator web console at `/operator`: unresolved escalations, a person's recent messages, and
the handoff steps (take, write, release, acknowledge, resolve), for teams without a Telegram
operator chat or beside it. On when SUPPORTBOT_OPERATOR_TOKEN is set.

Everything it shows is read from the database, so every replica serves the same console. An
operator signs in with the team's token and their name; the session is a cookie signed with a key
derived from the token (no server-side state, and changing the token signs everyone out). Every
API call must carry the `X-Requested-With` header, which a page on another site cannot add to a
request without the browser asking this server first; with the SameSite=Strict cookie, that keeps
other sites from acting in an operator's name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from bot.alerts import Alert
from bot.channels.json_body import json_error, json_object
from bot.channels.web import secure_cookies
from bot.crisis.levels import Level
from bot.handoff import ACTIONS, LOWER_TO, Refused
from bot.service import Service
from db import repo
from db.engine import DATABASE_ERRORS

log = logging.getLogger(__name__)

COOKIE = "supportbot_operator"
CSRF_HEADER, CSRF_VALUE = "X-Requested-With", "supportbot-console"
SESSION_S = 12 * 3600
MAX_BODY = 64_000
MAX_NAME = 64
MAX_ID = 2**31 - 1  # the id columns are 32-bit integers
SHOWN_ESCALATIONS = 200
SHOWN_MESSAGES = 50

_SERVICE = web.AppKey("console_service", Service)
_KEY = web.AppKey("console_key", bytes)

Handler = Callable[[web.Request, str], Awaitable[web.Response]]


def _signature(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def session_cookie(key: bytes, name: str, now: float) -> str:
    """`name` signed in until `now + SESSION_S`."""
    payload = f"{base64.urlsafe_b64encode(name.encode()).decode()}.{int(now) + SESSION_S}"
    return f"{payload}.{_signature(key, payload)}"


def signed_in(key: bytes, cookie: str, now: float) -> str | None:
    """The operator a session cookie names, if its signature holds and it has not expired."""
    payload, _, signature = cookie.rpartition(".")
    encoded, _, expires = payload.partition(".")
    if not hmac.compare_digest(_signature(key, payload), signature) or not expires.isdigit():
        return None
    if int(expires) < now:
        return None
    try:
        return base64.urlsafe_b64decode(encoded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _error(status: int, message: str) -> web.HTTPException:
    kinds = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound}
    return json_error(kinds.get(status, web.HTTPServiceUnavailable), message)


def _from_the_console(request: web.Request) -> None:
    """Refuse a request the console's own script did not make (see the module docstring)."""
    if request.headers.get(CSRF_HEADER) != CSRF_VALUE:
        raise _error(403, f"the console's requests carry {CSRF_HEADER}")


def _operator(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Run `handler` for a signed-in operator's own request (see the module docstring), with their
    name as the audit trail records it; a database failure is a 503, never a traceback."""

    async def checked(request: web.Request) -> web.Response:
        _from_the_console(request)
        name = signed_in(request.app[_KEY], request.cookies.get(COOKIE, ""), time.time())
        if name is None:
            raise _error(401, "sign in first")
        try:
            return await handler(request, f"console:{name}")
        except DATABASE_ERRORS:
            log.exception("database failed serving the operator console")
            raise _error(503, "the database is unavailable; try again in a moment") from None

    return checked


async def page(_request: web.Request) -> web.Response:
    """The console page; no other site may frame it (a framed page can be clicked through unseen)."""
    html = resources.files("bot.channels.static").joinpath("operator.html").read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"}
    return web.Response(text=html, content_type="text/html", headers=headers)


async def login(request: web.Request) -> web.Response:
    """POST {"token": ..., "name": ...}: the team's token opens a session in the operator's name."""
    _from_the_console(request)
    body = await json_object(request, MAX_BODY)
    token, name = body.get("token"), body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise _error(400, f"'name' must be 1-{MAX_NAME} printable characters")
    expected = request.app[_SERVICE].settings.operator_token or ""
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected.encode()):
        log.warning("operator console: a sign-in with a wrong token")
        raise _error(403, "wrong token")
    response = web.json_response({"operator": name.strip()})
    cookie = session_cookie(request.app[_KEY], name.strip(), time.time())
    secure = secure_cookies(request.app[_SERVICE].settings.public_url)
    response.set_cookie(
        COOKIE, cookie, max_age=SESSION_S, httponly=True, samesite="Strict", path="/operator", secure=secure
    )
    return response


async def logout(_request: web.Request) -> web.Response:
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/operator")
    return response


@_operator
async def escalations(request: web.Request, _operator_name: str) -> web.Response:
    """GET: every unresolved escalation, most urgent first."""
    async with request.app[_SERVICE].db.transaction() as session:
        rows = await repo.unresolved_escalations(session, SHOWN_ESCALATIONS)
    return web.json_response(
        {
            "escalations": [
                {
                    "id": row.id,
                    "conversation_id": row.conversation_id,
                    "level": Level(row.level).name.lower(),
                    "status": row.status,
                    "acknowledged_by": row.operator,
                    "held_by": row.held_by,
                    "channel": row.channel,
                    "alerts": row.alert_count,
                    "since": row.created_at.isoformat(),
                }
                for row in rows
            ]
        }
    )


@_operator
async def conversation(request: web.Request, _operator_name: str) -> web.Response:
    """GET: the latest messages of the person behind a conversation."""
    conversation_id = _positive(request.match_info["id"])
    async with request.app[_SERVICE].db.transaction() as session:
        messages = await repo.recent_messages(session, conversation_id, SHOWN_MESSAGES)
    if messages is None:
        raise _error(404, "no such conversation")
    return web.json_response(
        {
            "conversation_id": conversation_id,
            "messages": [
                {
                    "conversation_id": m.conversation_id,
                    "role": m.role,
                    "text": m.text,
                    "at": m.created_at.isoformat(),
                    "level": Level(m.risk_level).name.lower() if m.risk_level is not None else None,
                }
                for m in messages
            ],
        }
    )


@_operator
async def act(request: web.Request, operator: str) -> web.Response:
    """POST {"action": "take"|"release"|"say"|"ack"|"resolve", "id": N, "text"?: ..., "lower_to"?: ...}:
    a conversation id for the first three, an escalation id for the others."""
    body = await json_object(request, MAX_BODY)
    action, number = body.get("action"), _positive(body.get("id"))
    handoff = request.app[_SERVICE].handoff
    if action == "say":
        words = body.get("text")
        if not isinstance(words, str) or not words.strip():
            raise _error(400, "'text' must be a non-empty string")
        try:
            step = await handoff.say(number, operator, words.strip())
        except Refused as exc:  # the channel would not deliver it; nothing stored
            return web.json_response({"status": "refused", "reason": str(exc)})
    elif action in ACTIONS:
        lower = body.get("lower_to")
        if lower is not None and (action != "resolve" or lower not in LOWER_TO):
            raise _error(400, "'lower_to' goes with resolve and is none, distress or concern")
        step = await handoff.act(action, number, operator, LOWER_TO[lower] if lower is not None else None)
    else:
        raise _error(400, "'action' must be take, release, say, ack or resolve")
    return web.json_response(
        {"status": step.status, "conversation_id": step.conversation_id, "holder": step.holder, "reason": step.reason}
    )


def _positive(value: object) -> int:
    """A row id from a path or a body: ASCII digits or a JSON integer, within the id columns' range."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 12:
        number = int(value)
    if number is None or not 0 < number <= MAX_ID:
        raise _error(400, f"'id' must be a whole number from 1 to {MAX_ID}")
    return number


async def _listed(_alert: Alert) -> None:
    """The console's alert sink: nothing to send, since it reads escalations and messages from the
    database; subscribing says that alerts do reach operators here."""


def mount(app: web.Application, service: Service) -> None:
    """Add the console's routes when SUPPORTBOT_OPERATOR_TOKEN is set."""
    token = service.settings.operator_token
    if not token:
        return
    app[_SERVICE] = service
    service.alerts.subscribe(_listed)
    app[_KEY] = hashlib.sha256(b"supportbot operator console\0" + token.encode()).digest()
    app.router.add_get("/operator", page)
    app.router.add_post("/operator/login", login)
    app.router.add_post("/operator/logout", logout)
    app.router.add_get("/operator/api/escalations", escalations)
    app.router.add_get("/operator/api/conversations/{id}", conversation)
    app.router.add_post("/operator/api/actions", act)
