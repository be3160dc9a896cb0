"""Pad a list of Examples into model inputs: labels are IGNORE on prompt and padding positions."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from inference.prompt import Family
from training.batching import padded
from training.examples import IGNORE, Example


def _pad(rows: Sequence[Sequence[int]], value: int, length: int) -> torch.Tensor:
    return torch.tensor([[*row, *([value] * (length - len(row)))] for row in rows], dtype=torch.long)


class Collator:
    """Turns Examples into tensors for one family; `multiple` rounds padded lengths up (fewer shapes)."""

    def __init__(self, family: Family, pad_id: int, multiple: int | None = None, distractors: bool = False) -> None:
        self.family = family
        self.pad_id = pad_id
        self.multiple = multiple
        self.distractors = distractors

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        if self.distractors:
            return self._multiple_choice(examples)
        if self.family == "seq2seq":
            src = [e.prompt for e in examples]
            tgt = [e.response for e in examples]
            n, m = (padded(max(map(len, x)), self.multiple) for x in (src, tgt))
            return {
                "input_ids": _pad(src, self.pad_id, n),
                "attention_mask": _pad([[1] * len(s) for s in src], 0, n),
                "labels": _pad(tgt, IGNORE, m),
            }
        pairs = [e.causal() for e in examples]
        n = padded(max(len(ids) for ids, _ in pairs), self.multiple)
        return {
            "input_ids": _pad([ids for ids, _ in pairs], self.pad_id, n),
            "attention_mask": _pad([[1] * len(ids) for ids, _ in pairs], 0, n),
            "labels": _pad([labels for _, labels in pairs], IGNORE, n),
        }

    def _multiple_choice(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """GPT2DoubleHeadsModel inputs: candidates = distractors then the true reply (last, as mc_labels says);
        the language-model loss applies to the true reply only."""
        ids, labels, last = [], [], []
        for e in examples:
            for k, reply in enumerate((*e.distractors, e.response)):
                gold = k == len(e.distractors)
                ids.append([*e.prompt, *reply])
                labels.append([IGNORE] * len(e.prompt) + (list(reply) if gold else [IGNORE] * len(reply)))
                last.append(len(e.prompt) + len(reply) - 1)
        n = padded(max(map(len, ids)), self.multiple)
        b, c = len(examples), len(examples[0].distractors) + 1
        return {
            "input_ids": _pad(ids, self.pad_id, n).view(b, c, n),
            "attention_mask": _pad([[1] * len(x) for x in ids], 0, n).view(b, c, n),
            "labels": _pad(labels, IGNORE, n).view(b, c, n),
            "mc_token_ids": torch.tensor(last).view(b, c),
            "mc_labels": torch.full((b,), c - 1, dtype=torch.long),
        }
