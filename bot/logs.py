"""Logging set-up. The project never logs message text or phone numbers; this also quiets the
libraries that would, whatever the level asked for: HTTP clients whose INFO lines print request URLs
(a Telegram URL carries the bot token), python-telegram-bot, whose DEBUG lines print every message
sent and received, and Twilio's clients, which print request parameters (numbers, SMS bodies)."""

from __future__ import annotations

import logging

_NOISY = (
    "aiosqlite",
    "sqlalchemy.engine",
    "alembic",
    "httpx",
    "httpcore",
    "telegram",
    "aiohttp.access",
    "twilio",
    "asyncio",
)


def configure(level: str = "INFO") -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())  # also where handlers were already set up (basicConfig skips it)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
