"""The crisis layer as the dialogue core uses it: detector, safe replies and output filter in one object."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.crisis.components import load_components
from bot.crisis.detector import CrisisDetector
from bot.crisis.levels import Assessment
from bot.crisis.output_filter import OutputFilter
from bot.crisis.responses import SafeResponder
from bot.safety import SafeReply

log = logging.getLogger(__name__)


class CrisisLayer:
    """Implements `bot.safety.Safety` with the rule layer and the shipped data files."""

    def __init__(self, detector: CrisisDetector, responder: SafeResponder, output_filter: OutputFilter) -> None:
        self.detector = detector
        self.responder = responder
        self.output_filter = output_filter

    @classmethod
    def load(cls, classifier: str | None = None) -> CrisisLayer:
        """Load every data file now, so a malformed lexicon stops start-up instead of a turn.

        `classifier` names the learned backstops: None for the shipped ones (n-gram, then embedding),
        "" for the rules alone, or one model file; any that cannot load is left out (with a warning),
        never the rules.
        """
        detector = CrisisDetector.load(components=load_components(classifier))
        return cls(detector, SafeResponder.load(), OutputFilter.load())

    def assess(self, text: str, recent_user_texts: Sequence[str]) -> Assessment:
        return self.detector.assess(text, recent_user_texts)

    def safe_reply(self, assessment: Assessment, locale: str | None, country: str | None) -> SafeReply:
        message = self.responder.reply(assessment, locale=locale, country=country)
        return SafeReply(message.text, message.shown)

    def filter_reply(self, text: str) -> str | None:
        verdict = self.output_filter.check(text)
        return None if verdict.ok else f"{verdict.reason} ({verdict.rule_id})"
