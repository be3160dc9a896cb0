"""The interface an optional learned component implements to add recall on top of the rules."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from bot.crisis.levels import Assessment, Level

log = logging.getLogger(__name__)


class Component(Protocol):
    """Anything that can raise (never lower) the rule layer's level for a message."""

    name: str
    slow: bool  # tens of milliseconds a message: asked off the turn's critical path (see second_look)

    def assess(self, text: str, recent_user_texts: Sequence[str], rule_level: Level) -> Assessment | None:
        """An assessment to merge with the rules', or None for nothing to add."""
        ...


def ask(component: Component, text: str, recent: Sequence[str], level: Level) -> Assessment | None:
    """A broken learned component must never cost an assessment: any failure means "rules only"."""
    try:
        return component.assess(text, recent, level)
    except Exception as exc:  # noqa: BLE001 - any failure means "rules only" for this message
        log.warning("crisis component %s failed (%s); using the rules alone", component.name, type(exc).__name__)
        return None


def positives(labels: Iterable[str]) -> list[bool]:
    """Coarse labels to a component's target: crisis (concern and up) or not."""
    return [label == "crisis" for label in labels]


def data_version(kind: str, texts: Sequence[str], labels: Sequence[bool]) -> str:
    """Names the training data, so a shipped model can be checked against the files it came from."""
    digest = hashlib.sha1("\n".join(f"{int(label)}{t}" for t, label in zip(texts, labels, strict=True)).encode())
    return f"{kind}-{digest.hexdigest()[:10]}"
