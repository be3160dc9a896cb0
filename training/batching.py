"""Batch plans: token-budget dynamic batching, fixed-size batches, and static shapes for graph compilers.

token_budget — examples sorted into length buckets (`pad_to_multiple_of` wide) are packed greedily
  while `batch size x padded length` stays within `max_tokens` (batch size inversely proportional
  to sequence length); examples mix at random within a bucket and the batch order is shuffled each
  epoch. Wider buckets mix more kinds of example into a batch for a little more padding.
fixed — `batch_size` random examples padded to the longest (the usual default, the baseline).
static — fixed `batch_size`, each sequence padded up to a bucket (a multiple of `pad_to_multiple_of`,
  at most `block_size`): only a handful of shapes ever reach the device, as HPU/XLA graph
  compilation wants; incomplete batches are dropped so the batch dimension never changes.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

from training.config import BatchingConfig


def padded(length: int, multiple: int | None) -> int:
    return length if not multiple else math.ceil(length / multiple) * multiple


def batch_tokens(lengths: Sequence[tuple[int, ...]], multiple: int | None, rows: int = 1) -> int:
    """Tokens a batch occupies once padded: per column (encoder, decoder) batch x padded longest."""
    columns = zip(*lengths, strict=True)
    return rows * len(lengths) * sum(padded(max(column), multiple) for column in columns)


class BatchPlan(Sampler[list[int]]):
    """Yields lists of example indices; set_epoch reshuffles deterministically from the seed."""

    def __init__(
        self,
        lengths: Sequence[tuple[int, ...]],
        config: BatchingConfig,
        *,
        rows: int = 1,
        seed: int = 0,
        train: bool = True,
    ) -> None:
        self.lengths = list(lengths)
        self.config = config
        self.rows = rows  # sequences per example (candidates of the multiple-choice head)
        self.seed = seed
        self.train = train
        self.epoch = 0
        if config.mode == "token_budget":
            longest = max((batch_tokens([n], config.pad_to_multiple_of, rows) for n in self.lengths), default=0)
            if longest > config.max_tokens:
                raise ValueError(
                    f"batching.max_tokens={config.max_tokens} is below the longest example "
                    f"({longest} padded tokens); raise it or lower the prompt/response limits"
                )
        self._count = len(self._plan(random.Random(seed)))
        if self.lengths and not self._count:  # only static mode drops batches: each of its buckets fell short
            fullest = max(Counter(padded(max(n), self.multiple) for n in self.lengths).values())
            raise ValueError(
                f"batching.batch_size={config.batch_size} makes no full static batch (the most examples of one "
                f"padded length is {fullest}, and incomplete batches are dropped); lower batching.batch_size"
            )

    @property
    def multiple(self) -> int | None:
        """The padding step the collator must use for the shapes this plan promises."""
        if self.config.mode == "static":
            return self.config.pad_to_multiple_of or self.config.block_size
        return self.config.pad_to_multiple_of

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        batches = self._plan(rng)
        if self.train:
            rng.shuffle(batches)
        return iter(batches)

    def _plan(self, rng: random.Random) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        if self.train:
            rng.shuffle(order)
        if self.config.mode == "fixed":
            size = self.config.batch_size
            return [order[i : i + size] for i in range(0, len(order), size)]
        if self.config.mode == "static":
            return self._static(order)
        return self._token_budget(order)

    def _token_budget(self, order: list[int]) -> list[list[int]]:
        # A stable sort on padded lengths of a shuffled order: examples that pad to the same shape are
        # interchangeable at no cost, so they mix anew each epoch (batches are not all one kind of
        # example), while the sequence of padded lengths, hence the number of batches, stays the same.
        order.sort(key=lambda i: tuple(padded(n, self.multiple) for n in self.lengths[i]))
        batches: list[list[int]] = []
        batch: list[int] = []
        longest: tuple[int, ...] = ()
        for i in order:
            grown = tuple(map(max, longest, self.lengths[i])) if batch else self.lengths[i]
            if batch and batch_tokens([grown] * (len(batch) + 1), self.multiple, self.rows) > self.config.max_tokens:
                batches.append(batch)
                batch, grown = [], self.lengths[i]
            batch.append(i)
            longest = grown
        if batch:
            batches.append(batch)
        return batches

    def _static(self, order: list[int]) -> list[list[int]]:
        buckets: dict[int, list[int]] = defaultdict(list)
        for i in order:
            buckets[padded(max(self.lengths[i]), self.multiple)].append(i)
        size = self.config.batch_size
        batches = []
        for bucket in sorted(buckets):
            members = buckets[bucket]
            end = len(members) - len(members) % size if self.train else len(members)
            batches += [members[i : i + size] for i in range(0, end, size)]
        return batches


def padding_fraction(plan: BatchPlan) -> float:
    """Share of the padded tensor that is padding, over one epoch of the plan."""
    real = padded_total = 0
    for batch in plan:
        lengths = [plan.lengths[i] for i in batch]
        real += plan.rows * sum(sum(n) for n in lengths)
        padded_total += batch_tokens(lengths, plan.multiple, plan.rows)
    return 1 - real / padded_total if padded_total else 0.0
