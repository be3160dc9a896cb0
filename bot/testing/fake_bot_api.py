"""A local stand-in for the Telegram Bot API, for tests and `supportbot bench bot`.

It speaks the Bot API's HTTP protocol (`POST /bot<token>/<method>`, form or JSON parameters, the
`{"ok": ..., "result": ...}` envelope, 429 with `retry_after`), so python-telegram-bot talks to it
through its real HTTP stack. It records every call, serves `getUpdates` long polling from a queue
of pushed updates, and fails chosen methods on request. Also builds the updates Telegram would send.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 7_000_001
BOT_USERNAME = "supportbot_test_bot"
_INT_PARAMS = frozenset({"chat_id", "message_id", "offset", "limit", "timeout", "user_id", "max_connections"})
_JSON_PARAMS = frozenset({"reply_markup", "allowed_updates", "reply_parameters", "reaction", "entities"})


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.perf_counter)


def _decode(params: dict[str, Any]) -> dict[str, Any]:
    """PTB sends every parameter as a form field (objects JSON-encoded); restore the types we inspect."""
    decoded: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, str) and key in _INT_PARAMS and value.lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, str) and key in _JSON_PARAMS:
            value = json.loads(value)
        decoded[key] = value
    return decoded


def _chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": f"person{chat_id}"}
    return {"id": chat_id, "type": "supergroup", "title": f"group{chat_id}"}


def bot_user() -> dict[str, Any]:
    return {"id": BOT_ID, "is_bot": True, "first_name": "Support", "username": BOT_USERNAME, "can_join_groups": True}


class FakeBotAPI:
    """The Bot API's HTTP side, in-process; see the module docstring."""

    def __init__(self, token: str, *, record: bool = True) -> None:
        self.token = token
        self.record = record
        self.calls: list[Call] = []
        self.on_call: Callable[[Call], None] | None = None
        self.webhook: dict[str, Any] | None = None
        self._failures: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self._updates: list[dict[str, Any]] = []
        self._new_update = asyncio.Event()
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1000))
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- running -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a free port; returns the base URL to give PTB (TELEGRAM_API_URL)."""
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{bound}/bot"
        return self.base_url

    async def stop(self) -> None:
        self._new_update.set()  # wake a pending getUpdates
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what tests control ------------------------------------------------------------------

    def fail(self, method: str, status: int = 429, *, retry_after: int | None = None, times: int = 1) -> None:
        """Make the next `times` calls of `method` fail with `status` (429 carries `retry_after`)."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": f"stand-in failure {status}"}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
            body["description"] = f"Too Many Requests: retry after {retry_after}"
        self._failures[method].extend([(status, body)] * times)

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates (polling mode)."""
        self._updates.append(update)
        self._new_update.set()

    def calls_of(self, method: str, chat_id: int | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (chat_id is None or c.params.get("chat_id") == chat_id)]

    def texts_to(self, chat_id: int) -> list[str]:
        """The texts of every message sent to a chat, in order."""
        return [c.params["text"] for c in self.calls_of("sendMessage", chat_id)]

    async def wait_for(self, predicate: Callable[[FakeBotAPI], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate(self)` holds (checked after every call); TimeoutError otherwise."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    async def wait_for_messages(self, chat_id: int, count: int, timeout: float = 10.0) -> list[str]:
        await self.wait_for(lambda api: len(api.texts_to(chat_id)) >= count, timeout)
        return self.texts_to(chat_id)

    # --- the HTTP side -----------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        return dict(await request.post()) if request.can_read_body else dict(request.query)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = _decode(await self._params(request))
        call = Call(method, params)
        if self.on_call is not None:
            self.on_call(call)
        if self.record:
            self.calls.append(call)
            async with self._changed:
                self._changed.notify_all()
        failures = self._failures.get(method)
        if failures:
            status, body = failures.pop(0)
            return web.json_response(body, status=status)
        if method == "getUpdates":
            return web.json_response({"ok": True, "result": await self._get_updates(params)})
        try:
            result = self._answer(method, params)
        except KeyError as missing:
            return web.json_response(
                {"ok": False, "error_code": 400, "description": f"Bad Request: {missing} is required"}, status=400
            )
        if result is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.json_response({"ok": True, "result": result})

    def _answer(self, method: str, params: dict[str, Any]) -> Any:
        match method:
            case "getMe":
                return bot_user()
            case "sendMessage":
                chat_id = params["chat_id"]
                message = {
                    "message_id": next(self._message_ids[chat_id]),
                    "date": int(time.time()),
                    "chat": _chat(chat_id),
                    "from": bot_user(),
                    "text": params["text"],
                }
                if "reply_markup" in params:
                    message["reply_markup"] = params["reply_markup"]
                return message
            case "editMessageText" | "editMessageReplyMarkup":
                message = {
                    "message_id": params["message_id"],
                    "date": int(time.time()),
                    "chat": _chat(params["chat_id"]),
                    "from": bot_user(),
                    "text": params.get("text", ""),
                }
                if "reply_markup" in params:
                    message["reply_markup"] = params["reply_markup"]
                return message
            case "setWebhook":
                self.webhook = params
                return True
            case "deleteWebhook":
                self.webhook = None
                return True
            case "getWebhookInfo":
                return {
                    "url": (self.webhook or {}).get("url", ""),
                    "has_custom_certificate": False,
                    "pending_update_count": 0,
                }
            case "sendChatAction" | "answerCallbackQuery" | "setMessageReaction" | "setMyCommands" | "close":
                return True
        return None

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Long polling: the updates from `offset` on, waiting up to `timeout` seconds for one."""
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed ones are gone
        if not self._updates:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), float(params.get("timeout") or 0))
            except TimeoutError:
                pass
        limit = int(params.get("limit") or 100)
        return self._updates[:limit]


# --- the updates Telegram sends ---------------------------------------------------------------

_update_ids = itertools.count(1)


def _user(user_id: int, language_code: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": f"person{user_id}"}
    if language_code:
        user["language_code"] = language_code
    return user


def message_update(
    chat_id: int,
    *,
    text: str | None = None,
    message_id: int | None = None,
    update_id: int | None = None,
    user_id: int | None = None,
    language_code: str | None = "en",
    **extra: Any,
) -> dict[str, Any]:
    """A `message` update: a text (commands get their bot_command entity) or, via `extra`, anything else
    (sticker=..., voice=..., reply_to_message=..., entities=...)."""
    update_id = update_id if update_id is not None else next(_update_ids)
    message: dict[str, Any] = {
        "message_id": message_id if message_id is not None else update_id,
        "date": int(time.time()),
        "chat": _chat(chat_id),
        "from": _user(user_id if user_id is not None else abs(chat_id), language_code),
    }
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    message.update(extra)
    return {"update_id": update_id, "message": message}


def callback_update(
    chat_id: int,
    data: str,
    *,
    message_id: int = 1,
    user_id: int | None = None,
    language_code: str | None = "en",
    inaccessible: bool = False,
) -> dict[str, Any]:
    """A button press on one of the bot's messages in `chat_id`; `inaccessible`: on a message deleted
    since, which Telegram sends as a bare stub (date 0) that a reply cannot quote."""
    update_id = next(_update_ids)
    message: dict[str, Any] = {"message_id": message_id, "date": 0, "chat": _chat(chat_id)}
    if not inaccessible:
        message |= {"date": int(time.time()), "from": bot_user(), "text": "(a message with buttons)"}
    return {
        "update_id": update_id,
        "callback_query": {
            "id": str(update_id),
            "from": _user(user_id if user_id is not None else abs(chat_id), language_code),
            "chat_instance": str(chat_id),
            "data": data,
            "message": message,
        },
    }
