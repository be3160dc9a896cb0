"""What an assessment says: an ordered risk level, side tags and the evidence behind them.

Levels route a conversation (who is alerted, how fast, which reply is sent); they are not a
prediction of who will die. Evidence names each rule or component that fired, with the version
of the data it came from, so an escalation record can say exactly why it was opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Literal


class Level(IntEnum):
    """Urgency, ordered so that `max()` and comparisons work."""

    NONE = 0
    DISTRESS = 1  # pain without risk words: grief, fear under shelling, panic, loneliness
    CONCERN = 2  # passive ideation, burden, hopeless wish not to wake up
    CRISIS = 3  # method, intent, plan, self-harm now, harm to others, ongoing abuse, third person at risk
    EMERGENCY = 4  # attempt in progress, plan + means + time soon, farewells, danger to life right now

    @classmethod
    def parse(cls, name: str) -> Level:
        """`"crisis"` -> Level.CRISIS; a clear ValueError for anything else."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            names = ", ".join(m.name.lower() for m in cls)
            raise ValueError(f"unknown level {name!r}; expected one of {names}") from None


class Tag(StrEnum):
    """Who is at risk and from what; several may apply at once."""

    SELF = "self"
    THIRD_PARTY = "third_party"
    HARM_TO_OTHERS = "harm_to_others"
    ABUSE = "abuse"
    MINOR = "minor"
    MILITARY_DANGER = "military_danger"


CoarseLabel = Literal["crisis", "distress", "none"]


def coarse_label(level: Level) -> CoarseLabel:
    """The three-way label of the labelled data sets: crisis means `concern` and above."""
    if level >= Level.CONCERN:
        return "crisis"
    if level == Level.DISTRESS:
        return "distress"
    return "none"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason behind an assessment: which component, which rule, which data version."""

    component: str  # "rules", "combination", "context", "embedding"
    rule_id: str
    version: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """The crisis layer's verdict on one user message read with its recent context."""

    level: Level
    tags: frozenset[Tag] = field(default_factory=frozenset)
    evidence: tuple[Evidence, ...] = ()

    @property
    def label(self) -> CoarseLabel:
        return coarse_label(self.level)

    @property
    def needs_escalation(self) -> bool:
        """`concern` and above get the safe reply, an escalation record and an operator alert."""
        return self.level >= Level.CONCERN

    def raised_by(self, extra: Assessment) -> Assessment:
        """This verdict after a learned component's: the higher level, both verdicts' tags and evidence."""
        evidence = tuple(dict.fromkeys(self.evidence + extra.evidence))
        return Assessment(max(self.level, extra.level), self.tags | extra.tags, evidence)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form for audit records and the CLI (no message text in it)."""
        return {
            "level": self.level.name.lower(),
            "label": self.label,
            "tags": sorted(str(t) for t in self.tags),
            "evidence": [{"component": e.component, "rule_id": e.rule_id, "version": e.version} for e in self.evidence],
        }


NO_RISK = Assessment(Level.NONE)
