"""The crisis layer as the dialogue core uses it: detector, safe replies and output filter in one object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.crisis.components import load_components
from bot.crisis.detector import CrisisDetector
from bot.crisis.learned import Component
from bot.crisis.levels import Assessment, Level
from bot.crisis.output_filter import OutputFilter
from bot.crisis.responses import SafeResponder
from bot.crisis.second_look import SecondLook
from bot.safety import SafeReply, Screening

log = logging.getLogger(__name__)

INLINE_CHARS = 2000  # longer texts are read in a thread (4096 characters took 12 ms, 100 000 took 265 ms)


class CrisisLayer:
    """Implements `bot.safety.Safety` with the rule layer and the shipped data files."""

    def __init__(
        self,
        detector: CrisisDetector,
        responder: SafeResponder,
        output_filter: OutputFilter,
        *,
        second_look_workers: int = 1,
        second_look_queue: int = 500,
    ) -> None:
        self.detector = detector
        self.responder = responder
        self.output_filter = output_filter
        self.quick: tuple[Component, ...] = tuple(c for c in detector.components if not c.slow)
        slow = [c for c in detector.components if c.slow]
        self.second_look = (
            SecondLook(slow, workers=second_look_workers, max_pending=second_look_queue) if slow else None
        )

    @classmethod
    def load(cls, classifier: str | None = None, **second_look: int) -> CrisisLayer:
        """Load every data file now, so a malformed lexicon stops start-up instead of a turn.

        `classifier` names the learned backstops: None for the shipped ones (n-gram, then embedding),
        "" for the rules alone, or one model file; any that cannot load is left out (with a warning),
        never the rules. `second_look` sizes the slow components' queue (see `__init__`).
        """
        detector = CrisisDetector.load(components=load_components(classifier))
        return cls(detector, SafeResponder.load(), OutputFilter.load(), **second_look)

    def assess(self, text: str, recent_user_texts: Sequence[str]) -> Assessment:
        return self.detector.assess(text, recent_user_texts)

    async def screen(self, text: str, recent_user_texts: Sequence[str]) -> Screening:
        if len(text) <= INLINE_CHARS:
            quick = self.detector.assess(text, recent_user_texts, self.quick)
        else:  # a long text takes the rules ~3 ms per 1000 characters: not on the event loop
            quick = await asyncio.to_thread(self.detector.assess, text, recent_user_texts, self.quick)
        if self.second_look is None or quick.level >= Level.CONCERN or not text.strip():
            return Screening(quick)
        # Only a check that has to queue needs a rank: the quick components' score, the rules' level on top.
        queued = self.second_look.busy
        rank = int(quick.level) + self._score(text) if queued else 0.0
        return Screening(quick, self.second_look.ask(text, recent_user_texts, quick, rank), queued)

    def close(self) -> None:
        if self.second_look is not None:
            self.second_look.close()

    def _score(self, text: str) -> float:
        scores = [c.probability(text) for c in self.quick if hasattr(c, "probability")]
        return max(scores, default=0.0)

    def safe_reply(self, assessment: Assessment, locale: str | None, country: str | None) -> SafeReply:
        message = self.responder.reply(assessment, locale=locale, country=country)
        return SafeReply(message.text, message.shown)

    def filter_reply(self, text: str) -> str | None:
        verdict = self.output_filter.check(text)
        return None if verdict.ok else f"{verdict.reason} ({verdict.rule_id})"
