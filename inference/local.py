"""The in-process backend: engine and batching scheduler inside the bot's own process.

This is the embedded default (no worker to run); it batches the bot's concurrent
conversations exactly as the HTTP worker does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from inference.api import BackendError, ChatMessage, Completion, GenerationParams
from inference.engine import Engine, load_model
from inference.scheduler import Overloaded, Scheduler, SchedulerClosed


class InProcessBackend:
    """ChatBackend running the model in this process."""

    def __init__(self, engine: Engine, scheduler: Scheduler) -> None:
        self.engine = engine
        self.scheduler = scheduler

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        int8: bool = False,
        prompt_budget: int | None = None,
        **scheduler_options: Any,
    ) -> InProcessBackend:
        """Load the model (slow: call it in a thread) and set up its scheduler.
        Raises inference.engine.ModelLoadError when the model cannot be loaded."""
        engine = load_model(model, device=device, dtype=dtype, int8=int8, prompt_budget=prompt_budget)
        return cls(engine, Scheduler(engine, **scheduler_options))

    @property
    def model_name(self) -> str:
        return self.engine.name

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        try:
            result = await self.scheduler.generate(self.engine.prompt_ids(messages), params)
        except (Overloaded, SchedulerClosed) as exc:
            raise BackendError(str(exc)) from exc
        except Exception as exc:  # the turn falls back on any failure; keep the cause chained
            raise BackendError(f"in-process generation failed: {type(exc).__name__}") from exc
        return Completion(result.text, self.engine.name, result.prompt_tokens, result.completion_tokens)

    async def aclose(self) -> None:
        await self.scheduler.aclose()
