"""Test doubles for the inference backend and the crisis layer, for tests about the turn's mechanics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.crisis.levels import Assessment, Evidence, Level
from bot.safety import SafeReply, Screening
from inference.api import BackendError, ChatMessage, Completion, GenerationParams


class EchoBackend:
    """Answers 'echo: <last user text>' and records every prompt it was given."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[list[ChatMessage]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail = False

    @property
    def model_name(self) -> str:
        return "echo"

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.calls.append(list(messages))
            await asyncio.sleep(self.delay)
            if self.fail:
                raise BackendError("backend down")
            return Completion(f"echo: {messages[-1].content}", "echo", 1, 1)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        pass


class KeywordSafety:
    """A crisis-layer double for tests about the turn's mechanics: 'CRISIS' in the text is a crisis."""

    def __init__(self) -> None:
        self.unsafe_words = ("UNSAFE",)

    def assess(self, text: str, recent_user_texts: Sequence[str]) -> Assessment:
        if "CRISIS" in text:
            return Assessment(Level.CRISIS, evidence=(Evidence("test", "keyword", "1"),))
        return Assessment(Level.NONE)

    async def screen(self, text: str, recent_user_texts: Sequence[str]) -> Screening:
        return Screening(self.assess(text, recent_user_texts))

    def safe_reply(self, assessment: Assessment, locale: str | None, country: str | None) -> SafeReply:
        return SafeReply("You matter. Please call 112 or a helpline now.", "test-helpline")

    def filter_reply(self, text: str) -> str | None:
        return "unsafe word" if any(word in text for word in self.unsafe_words) else None

    def close(self) -> None:
        pass


class SecondLookSafety(KeywordSafety):
    """KeywordSafety whose slow second look, `delay` seconds after a message, rates 'HIDDEN' a concern."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def screen(self, text: str, recent_user_texts: Sequence[str]) -> Screening:
        quick = self.assess(text, recent_user_texts)
        if quick.level >= Level.CONCERN:
            return Screening(quick)
        verdict = Assessment(Level.CONCERN, evidence=(Evidence("test", "slow", "1"),)) if "HIDDEN" in text else None
        pending: asyncio.Future[Assessment | None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(self.delay, pending.set_result, verdict)
        return Screening(quick, pending)
