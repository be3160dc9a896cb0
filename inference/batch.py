"""The running batch of iteration-level (continuous) batching: its rows and their key/value cache.

Rows join between decoding steps and leave the step they finish, so no reply waits for a longer
neighbour and no newcomer waits for a whole batch to end (the engine runs the steps, the
scheduler decides who joins and leaves). Keys and values live in one buffer per layer, rows
side by side, columns aligned on the right: a step writes every row's new key at the same
column `hi`, so it is one batched attention over the window [lo, hi] with a mask hiding each
row's columns left of its own start. The window spans the longest live row only, not a static
cache's full preallocated length. A newcomer's prompt states go just left of `hi`; a leaving
row is overwritten by the last row (one row copied, not the batch); when `hi` reaches the
buffer's end the window moves back to the start (amortised by doubling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList
from transformers.cache_utils import EncoderDecoderCache

States = Sequence[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of shape (1, heads, tokens, dim)


@dataclass(eq=False)
class Row:
    """One request in the running batch. `history` is what logits processors see (causal: prompt
    and reply; seq2seq: decoder start and reply); `next_input` is fed at `position` next step."""

    prompt: list[int]
    config: GenerationConfig
    limit: int
    processors: LogitsProcessorList
    history: list[int]
    next_input: int
    position: int
    tag: Any = None
    produced: list[int] = field(default_factory=list)
    done: bool = False


class _Buffers:
    """Per-layer key and value tensors of shape (rows, heads, columns, dim), grown by doubling."""

    def __init__(self, layers: int, heads: int, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.depth, self.heads, self.dim, self.dtype, self.device = layers, heads, dim, dtype, device
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.rows = 0

    @property
    def row_capacity(self) -> int:
        return self.keys[0].shape[0] if self.keys else 0

    @property
    def columns(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def reallocate(self, rows: int, columns: int, keep: slice, to: int) -> None:
        """New buffers; live rows' columns `keep` are copied to start at column `to`."""
        shape = (rows, self.heads, columns, self.dim)
        width = (keep.stop - keep.start) if self.keys else 0
        for store in (self.keys, self.values):
            for index in range(self.depth):
                fresh = torch.empty(shape, dtype=self.dtype, device=self.device)  # see SelfAttentionCache.add
                if index < len(store):
                    fresh[: self.rows, :, to : to + width] = store[index][: self.rows, :, keep]
                    store[index] = fresh
                else:
                    store.append(fresh)

    def move_row(self, source: int, target: int, columns: slice) -> None:
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[target, :, columns] = tensor[source, :, columns]

    def put_row(self, row: int, states: States, at: int) -> None:
        for index, (keys, values) in enumerate(states):
            length = keys.shape[2]
            self.keys[index][row, :, at : at + length] = keys[0]
            self.values[index][row, :, at : at + length] = values[0]


class SelfAttentionCache(_Buffers):
    """The rows' own keys/values, right-aligned; transformers' attention layers call `update`."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.hi = 0  # the column the next step writes
        self.starts: list[int] = []  # each row's first column

    @property
    def lo(self) -> int:
        return min(self.starts, default=self.hi)

    def add(self, states: States | None, length: int) -> None:
        """Append a row whose past (`length` columns, `states` when non-empty) ends at `hi`."""
        if self.rows == self.row_capacity or self.hi < length or self.hi >= self.columns:
            self._fit(self.rows + 1, length)
        # Buffers start uninitialised (fresh zeroed memory costs ~0.1 s per 256 MB on CPU), but a
        # masked column must hold a finite number, as it is weighted 0 and 0 * NaN is NaN: every
        # column of the window [lo, hi) is kept finite for every row.
        lo, start, row = self.lo, self.hi - length, self.rows
        if self.rows and start < lo:
            self._zero(slice(0, row), slice(start, lo))
        if start > lo:
            self._zero(slice(row, row + 1), slice(lo, start))
        if states:
            self.put_row(row, states, start)
        self.starts.append(start)
        self.rows += 1

    def _zero(self, rows: slice, columns: slice) -> None:
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[rows, :, columns] = 0

    def _fit(self, rows: int, left: int) -> None:
        """Room for `rows` rows, `left` columns before `hi` and one at it: the window moves back to
        the buffer's start, in place while the buffers are large enough (fresh memory is slow)."""
        lo, width = self.lo, self.hi - self.lo
        start = max(0, left - width)
        if rows > self.row_capacity or start + width + 1 > self.columns:
            capacity = max(rows, 2 * self.row_capacity, 4)
            self.reallocate(capacity, max(2 * (start + width + 1), self.columns) + 32, slice(lo, self.hi), start)
        elif start != lo:
            for store in (self.keys, self.values):
                for tensor in store:
                    tensor[: self.rows, :, start : start + width] = tensor[: self.rows, :, lo : self.hi].clone()
        self.starts = [s - lo + start for s in self.starts]
        self.hi = start + width

    def remove(self, row: int) -> None:
        last = self.rows - 1
        if row != last:
            self.move_row(last, row, slice(self.lo, self.hi))
            self.starts[row] = self.starts[last]
        self.starts.pop()
        self.rows -= 1

    def step_mask(self) -> torch.Tensor:
        """Make room for this step's column and return its additive mask (rows, 1, 1, window)."""
        if self.hi >= self.columns:
            self._fit(self.rows, 0)
        columns = torch.arange(self.lo, self.hi + 1, device=self.device)
        starts = torch.tensor(self.starts, device=self.device)
        return _additive(columns[None, :] >= starts[:, None], self.dtype)

    def advance(self) -> None:
        self.hi += 1

    def update(
        self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys/values (rows, heads, 1, dim) at `hi`; return the live window."""
        window = slice(self.lo, self.hi + 1)
        self.keys[layer_idx][: self.rows, :, self.hi] = keys[:, :, -1]
        self.values[layer_idx][: self.rows, :, self.hi] = values[:, :, -1]
        return self.keys[layer_idx][: self.rows, :, window], self.values[layer_idx][: self.rows, :, window]


class _CrossLayer:
    """What a decoder layer reads for cross-attention: the rows' encoder keys/values."""

    def __init__(self, cache: CrossAttentionCache, index: int) -> None:
        self.cache, self.index = cache, index

    @property
    def keys(self) -> torch.Tensor:
        return self.cache.keys[self.index][: self.cache.rows, :, : self.cache.width]

    @property
    def values(self) -> torch.Tensor:
        return self.cache.values[self.index][: self.cache.rows, :, : self.cache.width]


class CrossAttentionCache(_Buffers):
    """Encoder keys/values per row (seq2seq), left-aligned, computed once when the row joins."""

    def __init__(self, *args: Any, max_columns: int) -> None:
        super().__init__(*args)
        self.max_columns = max_columns
        self.lengths: list[int] = []
        self.layers = [_CrossLayer(self, index) for index in range(self.depth)]  # as transformers reads them

    @property
    def width(self) -> int:
        return max(self.lengths, default=0)

    def add(self, states: States) -> None:
        if self.rows == self.row_capacity:
            self.reallocate(max(4, 2 * self.row_capacity), self.max_columns, slice(0, self.max_columns), 0)
        length = states[0][0].shape[2]
        self.put_row(self.rows, states, 0)
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[self.rows, :, length:] = 0  # finite where masked (see SelfAttentionCache.add)
        self.lengths.append(length)
        self.rows += 1

    def remove(self, row: int) -> None:
        last = self.rows - 1
        if row != last:
            self.move_row(last, row, slice(0, self.lengths[last]))
            self.lengths[row] = self.lengths[last]
        self.lengths.pop()
        self.rows -= 1

    def mask(self) -> torch.Tensor:
        columns = torch.arange(self.width, device=self.device)
        lengths = torch.tensor(self.lengths, device=self.device)
        return _additive(columns[None, :] < lengths[:, None], self.dtype)


class Seq2SeqCache(EncoderDecoderCache):
    """Both caches in the shape transformers' encoder-decoder attention layers expect; the cross
    side is marked filled, so no layer recomputes encoder keys/values."""

    def __init__(self, own: SelfAttentionCache, cross: CrossAttentionCache) -> None:  # no super(): nothing to build
        self.self_attention_cache = own
        self.cross_attention_cache = cross
        self.is_updated = dict.fromkeys(range(cross.depth), True)


def _additive(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    mask.masked_fill_(~visible, torch.finfo(dtype).min)
    return mask[:, None, None, :]


class RunningBatch:
    """The rows decoding together and their caches (`cross` for encoder-decoder models only)."""

    def __init__(self, own: SelfAttentionCache | None, cross: CrossAttentionCache | None = None) -> None:
        self.rows: list[Row] = []
        self.own: Any = own
        self.cross = cross
        self.cache: Any = Seq2SeqCache(own, cross) if cross is not None else own

    def __len__(self) -> int:
        return len(self.rows)

    @torch.inference_mode()
    def add(self, row: Row, states: States | None, past: int, encoder_states: States | None = None) -> None:
        self.own.add(states, past)
        if self.cross is not None and encoder_states is not None:
            self.cross.add(encoder_states)
        self.rows.append(row)

    @torch.inference_mode()
    def remove(self, row: Row) -> None:
        """The row leaves; the last row takes its slot (caches and list alike)."""
        index = self.rows.index(row)
        self.own.remove(index)
        if self.cross is not None:
            self.cross.remove(index)
        self.rows[index] = self.rows[-1]
        self.rows.pop()
