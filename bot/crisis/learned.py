"""The interface an optional learned component implements to add recall on top of the rules."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from bot.crisis.levels import Assessment, Level


class Component(Protocol):
    """Anything that can raise (never lower) the rule layer's level for a message."""

    name: str

    def assess(self, text: str, recent_user_texts: Sequence[str], rule_level: Level) -> Assessment | None:
        """An assessment to merge with the rules', or None for nothing to add."""
        ...


def positives(labels: Iterable[str]) -> list[bool]:
    """Coarse labels to a component's target: crisis (concern and up) or not."""
    return [label == "crisis" for label in labels]


def data_version(kind: str, texts: Sequence[str], labels: Sequence[bool]) -> str:
    """Names the training data, so a shipped model can be checked against the files it came from."""
    digest = hashlib.sha1("\n".join(f"{int(label)}{t}" for t, label in zip(texts, labels, strict=True)).encode())
    return f"{kind}-{digest.hexdigest()[:10]}"
