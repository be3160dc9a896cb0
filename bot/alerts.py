"""Fan-out of operator alerts to whichever operator channels are configured (Telegram, web console).

The dialogue core announces; channels subscribe. An alert that no channel could deliver is logged
(without message text) and counted, never allowed to break the user's turn.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.metrics import ALERT_FAILURES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Alert:
    """What operators need to act: who, how urgent, a short excerpt, and how to take over."""

    kind: str  # "escalation", "realert", "human_requested", "user_message" (to the operator holding a conversation)
    user_id: int | None
    conversation_id: int | None
    escalation_id: int | None
    level: str
    channel: str
    excerpt: str
    tags: tuple[str, ...] = ()


Sink = Callable[[Alert], Awaitable[None]]
Withdraw = Callable[[int], None]  # a person (user id) deleted their data: drop their alerts not yet sent


class OperatorAlerts:
    """Delivers each alert to every subscribed sink."""

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._withdraws: list[Withdraw] = []

    def subscribe(self, sink: Sink, withdraw: Withdraw | None = None) -> None:
        """Deliver alerts to `sink`; a sink that queues them gives `withdraw` to drop a person's."""
        self._sinks.append(sink)
        if withdraw is not None:
            self._withdraws.append(withdraw)

    def unsubscribe(self, sink: Sink, withdraw: Withdraw | None = None) -> None:
        self._sinks.remove(sink)
        if withdraw is not None:
            self._withdraws.remove(withdraw)

    def withdraw(self, user_id: int) -> None:
        """The person deleted their data: alerts about them still queued are not sent (their words
        would otherwise reach operators after the deletion)."""
        for withdraw in self._withdraws:
            withdraw(user_id)

    async def send(self, alert: Alert) -> bool:
        """True when at least one sink delivered it."""
        delivered = False
        for sink in list(self._sinks):
            try:
                await sink(alert)
                delivered = True
            except Exception:
                ALERT_FAILURES.inc()
                log.exception("operator alert %s for escalation %s failed in %r", alert.kind, alert.escalation_id, sink)
        if not delivered:
            log.warning(
                "operator alert %s (escalation %s, level %s) reached no operator channel",
                alert.kind,
                alert.escalation_id,
                alert.level,
            )
        return delivered


def excerpt(text: str, limit: int = 200) -> str:
    """A short, single-line excerpt of a message for an alert."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
