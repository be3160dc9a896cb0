"""Putting text into a chat: long texts in clean parts, and "typing…" while a reply is being made."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction
from telegram.error import TelegramError

from bot.channels.telegram_text import split_message

log = logging.getLogger(__name__)

# A fast turn (crisis reply, fallback, cached answer) finishes before anyone would see the indicator,
# so it is shown only once a reply takes longer than this; Telegram clears it after ~5 s.
TYPING_AFTER_S = 0.3
TYPING_REPEAT_S = 4.5


async def send_text(bot: Bot, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None) -> list[Message]:
    """Send `text` as one message or, when too long, several in order; buttons go under the last part."""
    parts = split_message(text)
    sent = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        sent.append(await bot.send_message(chat_id, part, reply_markup=markup if last else None))
    return sent


async def _keep_typing(bot: Bot, chat_id: int) -> None:
    await asyncio.sleep(TYPING_AFTER_S)
    while True:
        try:
            await bot.send_chat_action(chat_id, ChatAction.TYPING)
        except TelegramError as exc:
            log.debug("typing indicator failed: %s", type(exc).__name__)
        await asyncio.sleep(TYPING_REPEAT_S)


@contextlib.asynccontextmanager
async def typing(bot: Bot, chat_id: int) -> AsyncIterator[None]:
    """Show "typing…" in the chat for as long as the block runs (after a short grace period)."""
    task = asyncio.create_task(_keep_typing(bot, chat_id))
    try:
        yield
    finally:
        task.cancel()
