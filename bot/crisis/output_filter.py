"""The last check on the model's words: block replies that could hurt someone at risk.

A generative model can, rarely, agree with a wish to die, name a method or pretend to be a
doctor or the emergency services. Those replies are blocked (the dialogue sends the safe reply
instead and logs the reason). The patterns are data (`data/output_filter.yaml`) read by the
same engine as user messages, so negation works ("I'm not a doctor" passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.crisis.engine import RuleEngine
from bot.crisis.lexicon import DEFAULT_DIR, load_lexicon

DEFAULT_PATH = Path(__file__).with_name("data") / "output_filter.yaml"


@dataclass(frozen=True, slots=True)
class FilterVerdict:
    """`ok`, or blocked with the reason (a category) and the rule that fired."""

    ok: bool
    reason: str | None = None  # encourages_self_harm, encourages_violence, method_information, false_identity
    rule_id: str | None = None


class OutputFilter:
    """Checks replies against the filter rules; read-only, share one instance."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine

    @classmethod
    def load(cls, path: Path | None = None) -> OutputFilter:
        """The filter rules plus the shared negation cues; raises LexiconError on a bad file."""
        return cls(RuleEngine(load_lexicon([path or DEFAULT_PATH, DEFAULT_DIR / "negation.yaml"]), cache_size=256))

    def check(self, text: str) -> FilterVerdict:
        fired = self.engine.read(text).fired
        if not fired:
            return FilterVerdict(ok=True)
        rule = fired[0]
        return FilterVerdict(ok=False, reason=min(rule.facets, default=rule.id), rule_id=rule.id)


@lru_cache(maxsize=1)
def default_filter() -> OutputFilter:
    """The shipped filter, loaded once."""
    return OutputFilter.load()


def check_reply(text: str) -> FilterVerdict:
    """Check one model reply with the shipped filter."""
    return default_filter().check(text)
