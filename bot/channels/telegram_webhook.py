"""`POST /telegram/webhook`: Telegram's updates, received by the service's own HTTP server.

Telegram sends the secret given to setWebhook in a header; anything without it is refused before a
byte is parsed or stored. The update is handled inside the request, so Telegram only sees 200 once
the reply went out and redelivers if the process died on the way; the turn's message-id check turns
such a redelivery into one reply, not two.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from telegram import Bot, Update

from bot.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

Process = Callable[[Update], Awaitable[None]]
_OK = b'{"ok": true}'  # every handled update's answer, encoded once


def webhook_secret(settings: Settings) -> str:
    """TELEGRAM_WEBHOOK_SECRET, or one derived from the token: every replica computes the same secret,
    and it is as hard to guess as the token it comes from."""
    if settings.telegram_webhook_secret:
        return settings.telegram_webhook_secret
    assert settings.telegram_token, "the webhook needs a token"
    return hmac.new(settings.telegram_token.encode(), b"supportbot telegram webhook", hashlib.sha256).hexdigest()


class WebhookRoute:
    """The aiohttp handler: check the secret, parse the update, process it, answer 200."""

    def __init__(self, secret: str, bot: Callable[[], Bot | None], process: Process) -> None:
        self._secret = secret.encode()
        self._bot = bot  # None until the channel has connected to the Bot API
        self._process = process

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._secret):
            log.warning("refused a Telegram webhook call without the right secret token")
            return web.json_response({"error": "forbidden"}, status=403)
        bot = self._bot()
        if bot is None:  # still connecting: Telegram retries later
            return web.json_response({"error": "not ready"}, status=503)
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "body must be JSON"}, status=400)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return web.json_response({"error": "not a Telegram update"}, status=400)
        try:
            update = Update.de_json(data, bot)
        except (KeyError, TypeError, ValueError, AttributeError):
            return web.json_response({"error": "not a Telegram update"}, status=400)
        if not _words_are_text(update):
            return web.json_response({"error": "a message's text and caption must be strings"}, status=400)
        await self._process(update)
        return web.Response(body=_OK, content_type="application/json")


def _words_are_text(update: Update) -> bool:
    """python-telegram-bot takes field types on trust; the handlers read a message's words as str."""
    message = update.effective_message
    return message is None or all(isinstance(words, str | None) for words in (message.text, message.caption))
