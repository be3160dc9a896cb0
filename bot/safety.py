"""What the dialogue core asks of the crisis layer, in one small interface.

The turn needs three things: an assessment of the incoming text (a quick one now and, from slower
components, possibly a second one later), a safe reply for a level (below `concern`, a short
reminder of where to get help), and a check of the model's words before they are sent.
`bot.crisis.layer.CrisisLayer` builds them from the crisis package; tests may pass any object of
this shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.crisis.levels import Assessment


@dataclass(frozen=True, slots=True)
class SafeReply:
    text: str
    helplines_shown: str  # which resources were shown, for the audit trail


@dataclass(frozen=True, slots=True)
class Screening:
    """The quick verdict, and the future verdict of the slow components when they were asked;
    `queued` when that check waits behind others (then a reply does not wait for it)."""

    assessment: Assessment
    second_look: asyncio.Future[Assessment | None] | None = None
    queued: bool = False


class Safety(Protocol):
    def assess(self, text: str, recent_user_texts: Sequence[str]) -> Assessment:
        """Every component at once, in the caller's thread (tools; a turn without its database)."""
        ...

    async def screen(self, text: str, recent_user_texts: Sequence[str]) -> Screening:
        """The quick components now; below `concern`, the slow ones queued."""
        ...

    def safe_reply(self, assessment: Assessment, locale: str | None, country: str | None) -> SafeReply: ...

    def filter_reply(self, text: str) -> str | None:
        """None when the model's reply may be sent; otherwise why it must not be (no user words)."""
        ...

    def close(self) -> None:
        """Stop background work (the slow components' workers)."""
        ...
