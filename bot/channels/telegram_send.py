"""Putting text into a chat: long texts in clean parts, and "typing…" while a reply is being made."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from telegram import Bot, InlineKeyboardMarkup
from telegram.constants import ChatAction
from telegram.error import TelegramError

from bot.channels.telegram_text import split_message

log = logging.getLogger(__name__)

# Shown only once a reply takes longer than this; Telegram clears it after ~5 s. A turn that ends sooner
# (crisis reply, fallback, a fast model) needs no indicator. Not sooner: under load every turn takes some
# hundreds of milliseconds in queues, and at 0.3 s nearly every update sent a sendChatAction as well as
# its reply (`supportbot bench bot`: 1307 indicators for ~1400 updates), more load making more calls.
TYPING_AFTER_S = 1.0
TYPING_REPEAT_S = 4.5


async def send_text(bot: Bot, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Send `text` as one message or, when too long, several in order; buttons go under the last part.

    Through the bot's own request path (rate limiter, 429 retries, errors as PTB raises them), but the
    sent message Telegram echoes back is not parsed into a `telegram.Message`: nobody reads it, and
    building one cost about as much CPU as the rest of the call (profiled with `bench bot`)."""
    parts = split_message(text)
    for index, part in enumerate(parts):
        data: dict[str, object] = {"chat_id": chat_id, "text": part}
        if markup is not None and index == len(parts) - 1:
            data["reply_markup"] = markup
        await bot._post("sendMessage", data)  # send_message minus parsing the reply


async def _keep_typing(bot: Bot, chat_id: int) -> None:
    while True:
        try:
            await bot.send_chat_action(chat_id, ChatAction.TYPING)
        except TelegramError as exc:
            log.debug("typing indicator failed: %s", type(exc).__name__)
        await asyncio.sleep(TYPING_REPEAT_S)


@contextlib.asynccontextmanager
async def typing(bot: Bot, chat_id: int) -> AsyncIterator[None]:
    """Show "typing…" in the chat for as long as the block runs (after a short grace period).

    The grace period is a timer, not a task: most turns end inside it, and then nothing was started."""
    loop = asyncio.get_running_loop()
    shown: list[asyncio.Task[None]] = []
    timer = loop.call_later(TYPING_AFTER_S, lambda: shown.append(loop.create_task(_keep_typing(bot, chat_id))))
    try:
        yield
    finally:
        timer.cancel()
        for task in shown:
            task.cancel()
