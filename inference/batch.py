"""The running batch of iteration-level (continuous) batching: its rows and their key/value cache.

Rows join between decoding steps and leave the step they finish, so no reply waits for a longer
neighbour and no newcomer waits for a whole batch to end (the engine runs the steps, the
scheduler decides who joins and leaves). Keys and values live in one buffer per layer, rows
side by side, columns aligned on the right: a step writes every row's new key at the same
column `hi`, so it is one batched attention with a mask hiding each row's columns left of its
own start. A newcomer's prompt states go just left of `hi`; a leaving row is overwritten by the
last row (one row copied, not the batch). Attention reads the rows' whole buffers, which are
kept only a little wider than the longest live row: a window of columns would be copied by
every attention kernel first, three times the memory traffic of reading it. When `hi` reaches
the end, the live columns move to the start of a fresh layout.
"""

from __future__ import annotations

import math
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
    """Per-layer key and value tensors of shape (rows, heads, columns, dim), each a view over one
    flat storage that a new layout reuses in place, so steady decoding allocates nothing. Memory
    touched for the first time is slow on CPU (~0.4 ms per MB of page faults: a 16-row step's
    worth per 100 MB), so a layout never moves to other memory while its storage holds it, the
    storage is allocated with room to grow (its pages are touched only as far as layouts reach),
    and the row capacity starts at `rows_hint` (the scheduler's largest batch) rather than
    doubling into fresh storage as rows join. Every column of a live row holds a finite number
    (masked columns are weighted 0, and 0 * NaN is NaN)."""

    def __init__(
        self, layers: int, heads: int, dim: int, dtype: torch.dtype, device: torch.device, rows_hint: int = 0
    ) -> None:
        self.depth, self.heads, self.dim, self.dtype, self.device = layers, heads, dim, dtype, device
        self.rows_hint = rows_hint
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.rows = 0
        self._flat: list[torch.Tensor] = []

    @property
    def row_capacity(self) -> int:
        return self.keys[0].shape[0] if self.keys else 0

    @property
    def columns(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def grown_rows(self, rows: int) -> int:
        """The row capacity a layout for `rows` rows gets."""
        if rows <= self.row_capacity:
            return self.row_capacity
        return max(rows, 2 * self.row_capacity, self.rows_hint, 4)

    def reallocate(self, rows: int, columns: int, keep: slice, to: int) -> None:
        """Lay the buffers out anew; live rows' columns `keep` move to start at column `to`, their
        other columns are zeroed."""
        shape = (rows, self.heads, columns, self.dim)
        size = rows * self.heads * columns * self.dim
        old = self.keys + self.values
        if not self._flat or self._flat[0].numel() < size:
            self._flat = [torch.empty(2 * size, dtype=self.dtype, device=self.device) for _ in range(2 * self.depth)]
        layout = [flat[:size].view(shape) for flat in self._flat]
        if old:
            # Row by row, so that no row is overwritten before it has moved: a wider row starts
            # later in the storage than before, so the last row moves first; a narrower one first.
            grows = layout[0].stride(0) >= old[0].stride(0)
            for row in reversed(range(self.rows)) if grows else range(self.rows):
                for source, target in zip(old, layout, strict=True):
                    self._lay_row(target[row], source[row, :, keep], to)
        self.keys, self.values = layout[: self.depth], layout[self.depth :]

    @staticmethod
    def _lay_row(target: torch.Tensor, window: torch.Tensor, to: int) -> None:
        """One row's columns `window` (possibly overlapping `target`) written at `to`, zeros around."""
        width = window.shape[1]
        if window.untyped_storage().data_ptr() == target.untyped_storage().data_ptr():
            window = window.clone()
        target[:, :to] = 0
        target[:, to + width :] = 0
        target[:, to : to + width] = window

    def move_row(self, source: int, target: int, columns: slice) -> None:
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[target, :, columns] = tensor[source, :, columns]

    def put_row(self, row: int, states: States, at: int) -> None:
        """Write one row's states at columns [at, at + their length) and zeros elsewhere."""
        length = states[0][0].shape[2] if states else 0
        for index in range(self.depth):
            for store, part in ((self.keys, 0), (self.values, 1)):
                tensor = store[index][row]
                tensor[:, :at] = 0
                tensor[:, at + length :] = 0
                if length:
                    tensor[:, at : at + length] = states[index][part][0]


class SelfAttentionCache(_Buffers):
    """The rows' own keys/values, right-aligned; transformers' attention layers call `update`.
    Attention reads whole buffers (contiguous: a column window would be copied by every kernel),
    so the buffers are kept a little wider than the live window, which moves back to the start
    every `_margin` steps."""

    def __init__(self, *args: Any, rows_hint: int = 0) -> None:
        super().__init__(*args, rows_hint=rows_hint)
        self.hi = 0  # the column the next step writes
        self.starts: list[int] = []  # each row's first column

    @property
    def lo(self) -> int:
        return min(self.starts, default=self.hi)

    def add(self, states: States | None, length: int) -> None:
        """Append a row whose past (`length` columns, `states` when non-empty) ends at `hi`."""
        if self.rows == self.row_capacity or self.hi < length or self.hi >= self.columns:
            self._fit(self.rows + 1, length)
        self.put_row(self.rows, states or [], self.hi - length)
        self.starts.append(self.hi - length)
        self.rows += 1

    def _fit(self, rows: int, left: int) -> None:
        """A new layout with room for `rows` rows, `left` columns before `hi` and a margin after."""
        lo, width = self.lo, self.hi - self.lo
        start = max(0, left - width)
        used = start + width + 1
        # Reading m spare columns every step against moving the window every m steps (two reads
        # of it): the sum is least near m = sqrt(2 * width).
        margin = max(8, math.isqrt(2 * used))
        self.reallocate(self.grown_rows(rows), used + margin, slice(lo, self.hi), start)
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
        """Make room for this step's column and return its additive mask (rows, 1, 1, columns)."""
        if self.hi >= self.columns:
            self._fit(self.rows, 0)
        columns = torch.arange(self.columns, device=self.device)[None, :]
        starts = torch.tensor(self.starts, device=self.device)[:, None]
        return _additive((columns >= starts) & (columns <= self.hi), self.dtype)

    def advance(self) -> None:
        self.hi += 1

    def update(
        self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys/values (rows, heads, 1, dim) at `hi`; return the rows' buffers."""
        self.keys[layer_idx][: self.rows, :, self.hi] = keys[:, :, -1]
        self.values[layer_idx][: self.rows, :, self.hi] = values[:, :, -1]
        return self.keys[layer_idx][: self.rows], self.values[layer_idx][: self.rows]


class _CrossLayer:
    """What a decoder layer reads for cross-attention: the rows' encoder keys/values."""

    def __init__(self, cache: CrossAttentionCache, index: int) -> None:
        self.cache, self.index = cache, index

    @property
    def keys(self) -> torch.Tensor:
        return self.cache.keys[self.index][: self.cache.rows]

    @property
    def values(self) -> torch.Tensor:
        return self.cache.values[self.index][: self.cache.rows]


class CrossAttentionCache(_Buffers):
    """Encoder keys/values per row (seq2seq), left-aligned, computed once when the row joins."""

    def __init__(self, *args: Any, max_columns: int, rows_hint: int = 0) -> None:
        super().__init__(*args, rows_hint=rows_hint)
        self.max_columns = max_columns
        self.lengths: list[int] = []
        self.layers = [_CrossLayer(self, index) for index in range(self.depth)]  # as transformers reads them

    def add(self, states: States) -> None:
        if self.rows == self.row_capacity:
            self.reallocate(self.grown_rows(self.rows + 1), self.max_columns, slice(0, self.max_columns), 0)
        self.put_row(self.rows, states, 0)
        self.lengths.append(states[0][0].shape[2])
        self.rows += 1

    def remove(self, row: int) -> None:
        last = self.rows - 1
        if row != last:
            self.move_row(last, row, slice(0, self.lengths[last]))
            self.lengths[row] = self.lengths[last]
        self.lengths.pop()
        self.rows -= 1

    def mask(self) -> torch.Tensor:
        """Additive (rows, 1, 1, max_columns): all columns are read, as a window would be copied."""
        columns = torch.arange(self.max_columns, device=self.device)
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
    """The rows decoding together and their caches (`cross` for encoder-decoder models only), the
    prefilled causal rows that get their first token from the next step's output layer, and the
    random generator its sampled rows draw from (its own: batches run side by side in lanes)."""

    def __init__(
        self,
        own: SelfAttentionCache | None,
        cross: CrossAttentionCache | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.generator = generator
        self.rows: list[Row] = []
        self.joining: list[tuple[Row, States, torch.Tensor]] = []  # row, prompt states, last hidden state
        self.own: Any = own
        self.cross = cross
        self.cache: Any = Seq2SeqCache(own, cross) if cross is not None else own

    def __len__(self) -> int:
        return len(self.rows) + len(self.joining)

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
