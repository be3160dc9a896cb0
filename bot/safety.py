"""What the dialogue core asks of the crisis layer, in one small interface.

The turn needs three things: an assessment of the incoming text, a safe reply for a level (below
`concern`, a short reminder of where to get help), and a check of the model's words before they are
sent. `bot.crisis.layer.CrisisLayer` builds them from the crisis package; tests may pass any object
of this shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.crisis.levels import Assessment


@dataclass(frozen=True, slots=True)
class SafeReply:
    text: str
    helplines_shown: str  # which resources were shown, for the audit trail


class Safety(Protocol):
    def assess(self, text: str, recent_user_texts: Sequence[str]) -> Assessment: ...

    def safe_reply(self, assessment: Assessment, locale: str | None, country: str | None) -> SafeReply: ...

    def filter_reply(self, text: str) -> str | None:
        """None when the model's reply may be sent; otherwise why it must not be (no user words)."""
        ...
