"""Logging set-up: even at DEBUG, the libraries that print message text or numbers stay quiet."""

from __future__ import annotations

import logging

import pytest

from bot.logs import configure

TALKATIVE = ("telegram.Bot", "telegram.ext.ExtBot", "twilio.http_client", "twilio.async_http_client", "httpx")


@pytest.fixture
def restored_levels():
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in ("telegram", "twilio", "httpx"))]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_debug_logging_keeps_message_payloads_out(restored_levels) -> None:
    configure("debug")
    assert logging.getLogger("bot.dialogue").isEnabledFor(logging.DEBUG)
    for name in TALKATIVE:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
