"""Logging set-up. The project never logs message text or phone numbers; this also quiets the
HTTP client libraries whose INFO lines would print request URLs (a Telegram URL carries the bot token)."""

from __future__ import annotations

import logging

_NOISY = (
    "aiosqlite",
    "sqlalchemy.engine",
    "alembic",
    "httpx",
    "httpcore",
    "telegram.ext.Updater",
    "aiohttp.access",
    "twilio.http_client",
    "asyncio",
)


def configure(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
