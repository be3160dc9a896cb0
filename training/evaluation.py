"""Validation loss and perplexity on response tokens, and sample replies to fixed prompts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, PreTrainedModel

from inference.api import ChatMessage, GenerationParams
from inference.generation import request_config
from inference.prompt import PromptBuilder, persona_lines
from training.examples import IGNORE


@torch.no_grad()
def response_nll(model: PreTrainedModel, batches: Iterable[dict[str, torch.Tensor]], shift: bool) -> tuple[float, int]:
    """Summed negative log-likelihood of the label tokens and their count (token-weighted, unlike
    a mean of batch means, so variable batch sizes do not skew it). `shift` for causal models."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        labels = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "mc_labels"}).logits
        if shift:
            logits, labels = logits[..., :-1, :], labels[..., 1:]
        total += F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
        ).item()
        count += int((labels != IGNORE).sum())
    model.train(was_training)
    return total, count


def loss_metrics(total: float, count: int, prefix: str = "eval") -> dict[str, float]:
    loss = total / max(count, 1)
    return {f"{prefix}_loss": loss, f"{prefix}_perplexity": math.exp(min(loss, 50.0)), f"{prefix}_tokens": count}


@torch.no_grad()
def sample_replies(
    model: PreTrainedModel,
    tokenizer: Any,
    builder: PromptBuilder,
    persona: Sequence[str],
    prompts: Sequence[str],
    generation: GenerationConfig,
    max_new_tokens: int,
) -> list[dict[str, str]]:
    """The model's answer to each prompt as the first user message, decoded with `generation` as the
    worker would decode a request for `max_new_tokens` (a minimum length above it is lowered to fit)."""
    model.eval()
    generation = request_config(generation, builder.family, GenerationParams(), max_new_tokens)
    replies = []
    for text in prompts:
        ids = builder.prompt_ids(persona_lines(persona), [ChatMessage("user", text)])
        inputs = torch.tensor([ids], device=model.device)
        out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), generation_config=generation)
        reply = out[0] if model.config.is_encoder_decoder else out[0, len(ids) :]
        replies.append({"prompt": text, "reply": tokenizer.decode(reply, skip_special_tokens=True).strip()})
    return replies
