"""Training examples: the previous N turns plus persona as the prompt, the listener's turn as the response.

Prompts come from inference.prompt.PromptBuilder, so a model is trained on exactly the inputs the
worker will build for it. The train/validation split is decided per dialogue from a hash of its
text, so it is stable across runs, file orders and machines, and no dialogue feeds both sides.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from inference.api import ChatMessage
from inference.prompt import Family, PromptBuilder
from training.readers import Dialogue

IGNORE = -100  # label value the loss skips: prompt positions and padding


@dataclass(frozen=True, slots=True)
class Example:
    prompt: tuple[int, ...]
    response: tuple[int, ...]  # ends with EOS, unless the reply was cut to max_response_tokens
    distractors: tuple[tuple[int, ...], ...] = field(default=())  # wrong replies for the multiple-choice head

    def lengths(self, family: Family) -> tuple[int, ...]:
        """Sequence lengths that padding applies to: one (causal) or encoder and decoder (seq2seq)."""
        if family == "seq2seq":
            return (len(self.prompt), len(self.response))
        return (len(self.prompt) + max(len(r) for r in (self.response, *self.distractors)),)

    def causal(self) -> tuple[list[int], list[int]]:
        """input_ids and labels for a decoder-only model: loss on the response tokens only."""
        return [*self.prompt, *self.response], [IGNORE] * len(self.prompt) + list(self.response)


def is_validation(dialogue: Dialogue, fraction: float, seed: int) -> bool:
    """Deterministic split by content hash (not by position or path)."""
    text = "\x1e".join([*dialogue.persona, *(f"{t.role}:{t.content}" for t in dialogue.turns)])
    digest = hashlib.sha256(f"{seed}\x1f{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def exchanges(dialogue: Dialogue, context_turns: int) -> Iterator[tuple[list[ChatMessage], str]]:
    """(context, reply) for every assistant turn that follows at least one turn."""
    for i, turn in enumerate(dialogue.turns):
        if turn.role == "assistant" and i > 0:
            yield list(dialogue.turns[max(0, i - context_turns) : i]), turn.content


def build_examples(
    dialogues: Iterable[Dialogue], builder: PromptBuilder, context_turns: int, max_response_tokens: int
) -> list[Example]:
    """Tokenize every exchange. A reply longer than the limit is cut without an EOS: an EOS there would
    teach the model to stop mid-sentence, while without one it learns the reply's start and nothing of where it ends."""
    examples = []
    for d in dialogues:
        for context, reply in exchanges(d, context_turns):
            response = builder.response_ids(reply)[:max_response_tokens]
            examples.append(Example(tuple(builder.prompt_ids(d.persona, context)), tuple(response)))
    return examples


def add_distractors(examples: list[Example], num_candidates: int, seed: int, split: str) -> list[Example]:
    """Give each example `num_candidates - 1` replies drawn from other examples (GPT2DoubleHeadsModel).

    A split whose replies are all the same has no wrong reply to draw, so it is refused (naming the split)
    rather than trained with the true reply as its own distractor, which would teach the head nothing."""
    if len(examples) < num_candidates:
        raise ValueError(f"need at least {num_candidates} {split} examples to draw distractors from")
    if len({e.response for e in examples}) < 2:
        raise ValueError(
            f"every {split} example has the same reply, so the distractor head has no other reply to draw; "
            "add varied replies or set model.distractor.enabled=false"
        )
    rng = random.Random(seed)
    out = []
    for i, example in enumerate(examples):
        picks: list[tuple[int, ...]] = []
        while len(picks) < num_candidates - 1:
            j = rng.randrange(len(examples))
            if j != i and examples[j].response != example.response:
                picks.append(examples[j].response)
        out.append(replace(example, distractors=tuple(picks)))
    return out


def fit_to_block(examples: list[Example], family: Family, block: int, overflow: str) -> list[Example]:
    """Static-shape mode: an example longer than the block is dropped, or loses its oldest prompt tokens."""
    fitted = []
    for e in examples:
        if max(e.lengths(family)) <= block:
            fitted.append(e)
        elif overflow == "truncate":
            room = block if family == "seq2seq" else block - (e.lengths(family)[0] - len(e.prompt))
            if room > 0 and (family == "causal" or len(e.response) <= block):
                fitted.append(replace(e, prompt=e.prompt[-room:]))
    return fitted
