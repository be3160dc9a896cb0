"""Choosing the classifier's threshold on data it was not trained on (k-fold cross-validation).

The classifier is a recall backstop behind the rules, so what matters is the whole layer: a
message counts as escalated when the rules say `concern`+ or the classifier's out-of-fold
probability reaches the threshold. The lowest threshold that keeps `none` -> crisis (and,
optionally, `distress` -> crisis) within budget is taken: recall first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from bot.crisis.evaluation import Example

# Trains on the examples at the first indices and returns probabilities for those at the second.
FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]
CANDIDATES = tuple(round(t, 2) for t in np.arange(0.30, 0.96, 0.01))


@dataclass(frozen=True, slots=True)
class Choice:
    """A threshold with the whole layer's out-of-fold figures at it."""

    threshold: float
    crisis_recall: float
    none_to_crisis: float
    distress_to_crisis: float


def out_of_fold(count: int, folds: int, fit_predict: FitPredict, seed: int = 0) -> np.ndarray:
    """Each example's probability from a model trained on the other folds (folds fixed by the seed)."""
    order = np.random.default_rng(seed).permutation(count)
    fold_of = np.empty(count, dtype=np.int64)
    fold_of[order] = np.arange(count) % folds
    probs = np.zeros(count)
    for k in tqdm(range(folds), desc="cross-validation", unit="fold"):
        held_out = np.flatnonzero(fold_of == k)
        probs[held_out] = fit_predict(np.flatnonzero(fold_of != k), held_out)
    return probs


def sweep(examples: Sequence[Example], probs: np.ndarray, rules_escalate: Sequence[bool]) -> list[Choice]:
    """The whole layer's out-of-fold figures at every candidate threshold, lowest first."""
    gold = np.array([e.label for e in examples])
    rules = np.asarray(rules_escalate, dtype=bool)
    table = []
    for t in CANDIDATES:
        escalated = rules | (probs >= t)
        table.append(Choice(t, _share(escalated, gold == "crisis"), _share(escalated, gold == "none"),
                            _share(escalated, gold == "distress")))  # fmt: skip
    return table


def pick(table: Sequence[Choice], max_none_rate: float, max_distress_rate: float = 1.0) -> Choice:
    """The lowest threshold whose none -> crisis and distress -> crisis rates are within budget (recall first).

    The distress budget matters because a person in pain who is escalated gets a safe reply instead of
    a conversation, and operators who are paged for every sad message stop looking.
    """
    for choice in table:
        if choice.none_to_crisis <= max_none_rate and choice.distress_to_crisis <= max_distress_rate:
            return choice
    raise ValueError(
        f"no threshold keeps none -> crisis within {max_none_rate} and distress -> crisis within "
        f"{max_distress_rate}: the rules alone exceed them"
    )


def _share(escalated: np.ndarray, mask: np.ndarray) -> float:
    return float(escalated[mask].mean()) if mask.any() else 0.0
