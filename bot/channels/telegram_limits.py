"""Keeping within Telegram's flood limits without dropping a reply.

PTB's AIORateLimiter already paces the bot overall (~30 messages/s) and per group (20/minute), and on
a 429 pauses every request for `retry_after` before retrying. Telegram also asks for about one
message per second per chat, and the Bot API can fail with network errors or 5xx answers; this
subclass adds a per-chat leaky bucket and retries those failures with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from contextlib import nullcontext
from typing import Any

from aiolimiter import AsyncLimiter
from prometheus_client import Counter
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.ext import AIORateLimiter

log = logging.getLogger(__name__)

RETRY_AFTER_RETRIES = 30  # 429s in a row before giving up on one request (each waits retry_after)
NETWORK_RETRIES = 8  # backoff 0.5, 1, 2, ... capped at 30 s: a 90-second outage is survived
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 30.0
# Not retried here: the typing indicator is cosmetic, and the set-up calls are retried by the channel's
# own reconnect loop (retrying them here would hold the service's start-up for minutes).
NOT_RETRIED = frozenset({"sendChatAction", "getMe", "setWebhook", "deleteWebhook", "getWebhookInfo"})
_IDLE_LIMITERS = 1024  # prune idle per-chat buckets beyond this many

API_FAILURES = Counter(
    "supportbot_telegram_api_failures_total", "Bot API requests that failed after every retry", ["endpoint"]
)

Callback = Callable[..., Coroutine[Any, Any, Any]]


class PacedRateLimiter(AIORateLimiter):
    """AIORateLimiter plus per-chat pacing and retries with backoff for network errors and 5xx."""

    __slots__ = ("_chat_burst", "_chat_period", "_chats", "_network_retries")

    def __init__(
        self,
        *,
        overall_rate: float,
        chat_rate: float,
        chat_burst: int,
        network_retries: int = NETWORK_RETRIES,
    ) -> None:
        super().__init__(overall_max_rate=overall_rate, max_retries=RETRY_AFTER_RETRIES)
        self._chat_burst = chat_burst
        self._chat_period = chat_burst / chat_rate
        self._chats: dict[object, AsyncLimiter] = {}
        self._network_retries = network_retries

    def _chat_limiter(self, chat_id: object) -> AsyncLimiter:
        limiter = self._chats.get(chat_id)
        if limiter is None:
            if len(self._chats) >= _IDLE_LIMITERS:
                self._chats = {k: v for k, v in self._chats.items() if not v.has_capacity(v.max_rate)}
            limiter = self._chats[chat_id] = AsyncLimiter(self._chat_burst, self._chat_period)
        return limiter

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        chat_id = data.get("chat_id")
        pacing = self._chat_limiter(str(chat_id)) if chat_id is not None else nullcontext()
        retries = 0 if endpoint in NOT_RETRIED else self._network_retries
        attempt = 0
        while True:
            try:
                async with pacing:
                    return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
            except BadRequest:  # a subclass of NetworkError, but retrying cannot help
                raise
            except NetworkError as exc:
                if attempt >= retries:
                    API_FAILURES.labels(endpoint).inc()
                    raise
                delay = min(BACKOFF_FIRST_S * 2**attempt, BACKOFF_MAX_S)
                log.warning(
                    "Bot API %s failed (%s); retry %d in %.1fs", endpoint, type(exc).__name__, attempt + 1, delay
                )
                await asyncio.sleep(delay)
                attempt += 1
            except RetryAfter:
                API_FAILURES.labels(endpoint).inc()
                raise
