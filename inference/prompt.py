"""Model inputs built from a persona and a conversation, shared by serving and training.

Training and serving must feed the model byte-identical inputs, so both call this module.

Seq2seq (BlenderBot, BlenderbotSmall, any encoder-decoder) — the encoder input is the text

    "your persona: <line 1>  your persona: <line 2>  <turn 1>  <turn 2>  ...  <turn n>"

tokenized without the tokenizer's own special tokens, followed by one EOS id. Segments are
joined by two spaces and a user turn gets one extra leading space: this is the conversation
format of BlenderBot's Hugging Face chat template. Persona lines are written the way the
ConvAI2/BST data presents them ("your persona: ..."); a line that already starts so is kept.

Causal (DialoGPT, GPT-2, any decoder-only) — DialoGPT's format: every segment (persona lines
first, then the turns) is tokenized on its own and followed by EOS:

    ids("your persona: <line>") EOS ... ids(<turn 1>) EOS ids(<turn 2>) EOS ... ids(<turn n>) EOS

so the model continues with the bot's reply and ends it with EOS.

Reply (both families) — `response_ids(text)` is ids(text) followed by EOS: the decoder labels
for seq2seq and the continuation after the prompt for causal models.

Cutting to the budget — whole turns are dropped from the left (oldest first) until the prompt
fits; the persona and everything from the newest user turn onwards are always kept whole when
they fit together. When even they do not fit, the token ids of that shortest prompt are cut
from the left, keeping its end (the newest words and the final EOS).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from inference.api import ChatMessage

Family = Literal["seq2seq", "causal"]

PERSONA_PREFIX = "your persona: "
SEQ2SEQ_SEPARATOR = "  "
CAUSAL_DEFAULT_BUDGET = 256
PROMPT_BUDGET_KEY = "max_prompt_tokens"  # config.json key of the budget a model was trained with


def family_of(config: Any) -> Family:
    """Encoder-decoder models take the BlenderBot format, decoder-only ones the DialoGPT format."""
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def default_prompt_budget(family: Family, config: Any) -> int:
    """The prompt token budget: the one a model was trained with, when the training pipeline saved it in
    its config (so serving cuts prompts as training did); else the encoder's whole window for seq2seq
    (128 for the released BlenderBots); for causal models a quarter of the window at most, leaving the
    reply room and keeping CPU latency low (256 for GPT-2's 1024 positions)."""
    if saved := getattr(config, PROMPT_BUDGET_KEY, None):
        return int(saved)
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not positions:
        raise ValueError(f"{type(config).__name__} does not say how many positions the model has")
    if family == "seq2seq":
        return int(positions)
    return min(CAUSAL_DEFAULT_BUDGET, int(positions) // 2)


def persona_lines(texts: Iterable[str]) -> list[str]:
    """Persona lines as the model sees them, in serving and training alike: every line of every text,
    stripped, empty ones dropped."""
    return [line.strip() for text in texts for line in text.splitlines() if line.strip()]


def split_messages(messages: Sequence[ChatMessage]) -> tuple[list[str], list[ChatMessage]]:
    """System messages become persona lines (persona_lines); the rest are the turns."""
    persona = persona_lines(m.content for m in messages if m.role == "system")
    return persona, [m for m in messages if m.role != "system"]


def persona_line(line: str) -> str:
    """A persona line as the persona-chat data writes it."""
    return line if line.lower().startswith(PERSONA_PREFIX.strip()) else PERSONA_PREFIX + line


class PromptBuilder:
    """Turns persona + turns into the model's input ids, within a token budget."""

    def __init__(self, tokenizer: Any, family: Family, max_prompt_tokens: int) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token, which both prompt formats need")
        if max_prompt_tokens < 2:
            raise ValueError(f"max_prompt_tokens must be at least 2, got {max_prompt_tokens}")
        self.tokenizer = tokenizer
        self.family = family
        self.max_prompt_tokens = max_prompt_tokens
        self.eos_id: int = tokenizer.eos_token_id

    def prompt_ids(self, persona: Sequence[str], turns: Sequence[ChatMessage]) -> list[int]:
        """The model input for this conversation, cut to the budget as the module docstring says."""
        persona = [persona_line(line) for line in persona]
        keep_from = _newest_user_index(turns)
        # Drop the oldest turns one by one; a prompt only grows with more turns, so the first
        # start that fits keeps the most history.
        for start in range(self._first_candidate(persona, turns, keep_from), keep_from + 1):
            ids = self._encode(persona, turns[start:])
            if len(ids) <= self.max_prompt_tokens:
                return ids
        return ids[-self.max_prompt_tokens :]

    def response_ids(self, text: str) -> list[int]:
        """Target ids of a reply: its tokens then EOS."""
        return self._ids(text) + [self.eos_id]

    def _first_candidate(self, persona: list[str], turns: Sequence[ChatMessage], keep_from: int) -> int:
        """Skip starts that cannot fit, estimated from per-segment lengths, so long histories
        are not re-encoded once per turn. The estimate never overshoots by more than the
        boundary merges, so we back off one turn to stay safe."""
        lengths = [len(ids) + 1 for ids in self._batch_ids(persona + [t.content for t in turns])]
        total = sum(lengths)
        start = 0
        for start in range(keep_from + 1):
            if total <= self.max_prompt_tokens:
                break
            total -= lengths[len(persona) + start]
        return max(0, start - 1)

    def _encode(self, persona: Sequence[str], turns: Sequence[ChatMessage]) -> list[int]:
        if self.family == "seq2seq":
            segments = list(persona) + [(" " if t.role == "user" else "") + t.content for t in turns]
            return self._ids(SEQ2SEQ_SEPARATOR.join(segments)) + [self.eos_id]
        ids: list[int] = []
        for segment in self._batch_ids(list(persona) + [t.content for t in turns]):
            ids += segment + [self.eos_id]
        return ids

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _batch_ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _newest_user_index(turns: Sequence[ChatMessage]) -> int:
    """Index of the newest user turn (the turns from there on are never dropped)."""
    for index in range(len(turns) - 1, -1, -1):
        if turns[index].role == "user":
            return index
    return max(0, len(turns) - 1)
