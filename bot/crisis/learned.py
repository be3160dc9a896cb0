"""The interface an optional learned component implements to add recall on top of the rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.crisis.levels import Assessment, Level


class Component(Protocol):
    """Anything that can raise (never lower) the rule layer's level for a message."""

    name: str

    def assess(self, text: str, recent_user_texts: Sequence[str], rule_level: Level) -> Assessment | None:
        """An assessment to merge with the rules', or None for nothing to add."""
        ...
