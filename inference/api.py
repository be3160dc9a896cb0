"""The chat protocol the bot speaks to any inference backend.

It mirrors the OpenAI chat-completions shape (system = persona lines, user, assistant),
so the in-process engine, our worker's HTTP client and any vLLM/TGI server are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the conversation as the model sees it."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Per-request overrides; None keeps the model's own generation_config defaults.

    The last four are not in OpenAI's schema; servers that take extra sampling fields (ours,
    vLLM) honour them, and the client sends them only when set.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    top_k: int | None = None
    num_beams: int | None = None
    min_tokens: int | None = None
    no_repeat_ngram_size: int | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A generated reply with the accounting the bot stores beside it."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int


class BackendError(Exception):
    """The backend could not produce a reply (down, overloaded, timed out, refused)."""


class ChatBackend(Protocol):
    """Anything that turns chat messages into a reply: in-process engine or remote worker."""

    @property
    def model_name(self) -> str: ...

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        """Generate one reply; raise BackendError when no reply can be had."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and model memory."""
        ...
