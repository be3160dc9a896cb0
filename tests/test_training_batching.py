"""Batch plans: never over the token budget, every example once per epoch, static shapes, determinism."""

from __future__ import annotations

import random

import pytest

from training.batching import BatchPlan, batch_tokens, padding_fraction
from training.collate import Collator
from training.config import BatchingConfig
from training.examples import Example


def examples(n: int = 300, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    return [
        Example(
            tuple(rng.randrange(5, 50) for _ in range(rng.randrange(3, 150))), tuple([7] * rng.randrange(2, 40) + [0])
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("family", ["causal", "seq2seq"])
@pytest.mark.parametrize("multiple", [None, 8])
def test_no_batch_over_the_token_budget(family: str, multiple: int | None) -> None:
    data = examples()
    config = BatchingConfig(mode="token_budget", max_tokens=1500, pad_to_multiple_of=multiple)
    plan = BatchPlan([e.lengths(family) for e in data], config, seed=1)  # type: ignore[arg-type]
    collate = Collator(family, 1, plan.multiple)  # type: ignore[arg-type]
    seen = []
    sizes = set()
    for batch in plan:
        tensors = collate([data[i] for i in batch])
        used = tensors["input_ids"].numel() + (tensors["labels"].numel() if family == "seq2seq" else 0)
        assert used <= 1500
        assert used == batch_tokens([data[i].lengths(family) for i in batch], plan.multiple)  # type: ignore[arg-type]
        seen += batch
        sizes.add(len(batch))
    assert sorted(seen) == list(range(len(data)))
    assert len(sizes) > 3  # short sequences make big batches, long ones small


def test_epochs_reshuffle_deterministically_with_a_stable_length() -> None:
    lengths = [e.lengths("causal") for e in examples()]
    plan = BatchPlan(lengths, BatchingConfig(max_tokens=1200), seed=5)
    first = list(plan)
    plan.set_epoch(1)
    second = list(plan)
    assert first != second and len(first) == len(second) == len(plan)
    again = BatchPlan(lengths, BatchingConfig(max_tokens=1200), seed=5)
    again.set_epoch(1)
    assert list(again) == second
    evaluation = BatchPlan(lengths, BatchingConfig(max_tokens=1200), seed=5, train=False)
    assert list(evaluation) == list(evaluation)


def test_static_mode_has_few_fixed_shapes() -> None:
    data = [e for e in examples() if e.lengths("causal")[0] <= 128]
    config = BatchingConfig(mode="static", batch_size=8, block_size=128, pad_to_multiple_of=32)
    plan = BatchPlan([e.lengths("causal") for e in data], config, seed=2)
    collate = Collator("causal", 1, plan.multiple)
    shapes = {tuple(collate([data[i] for i in b])["input_ids"].shape) for b in plan}
    assert shapes <= {(8, 32), (8, 64), (8, 96), (8, 128)}
    block = BatchPlan(
        [e.lengths("causal") for e in data], config.model_copy(update={"pad_to_multiple_of": None}), seed=2
    )
    assert {tuple(Collator("causal", 1, block.multiple)([data[i] for i in b])["input_ids"].shape) for b in block} == {
        (8, 128)
    }


def test_fixed_mode_pads_to_longest_and_budget_pads_less() -> None:
    data = examples()
    lengths = [e.lengths("causal") for e in data]
    fixed = BatchPlan(lengths, BatchingConfig(mode="fixed", batch_size=16, pad_to_multiple_of=None), seed=0)
    assert sorted(len(b) for b in fixed)[1:] == [16] * (len(fixed) - 1)  # one short batch, at a shuffled place
    budget = BatchPlan(lengths, BatchingConfig(max_tokens=16 * 100, pad_to_multiple_of=None), seed=0)
    assert padding_fraction(budget) < 0.05 < padding_fraction(fixed)


def test_budget_below_longest_example_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens=100 is below the longest example"):
        BatchPlan([(50,), (120,)], BatchingConfig(max_tokens=100), seed=0)


def test_static_batch_size_no_bucket_fills_is_refused() -> None:
    lengths = [e.lengths("causal") for e in examples(40)]
    with pytest.raises(ValueError, match=r"batch_size=512 makes no full static batch .*lower batching.batch_size"):
        BatchPlan(lengths, BatchingConfig(mode="static", batch_size=512), seed=0)
    assert len(BatchPlan(lengths, BatchingConfig(mode="static", batch_size=512), train=False)) > 0
