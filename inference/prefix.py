"""Prefix caching: a conversation's next turn reuses the key/value states of its last prompt.

A chat's prompt for turn k+1 is its prompt for turn k followed by the reply and the new user
turn, so on CPU, where prefill is a large share of a reply's cost, most of the prompt has been
computed before. This keeps the states of recent prompts (least recently used first out, bounded
in bytes) and hands back the longest stored prefix of a new prompt, so only the rest is run —
the automatic prefix caching of vLLM and SGLang, for our per-prompt (ragged) prefill. A prompt
cut from the left to its budget shifts every position and simply finds no prefix.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch

States = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of shape (1, heads, tokens, dim)


class PrefixCache:
    """Key/value states of recent prompts, looked up by their longest shared prefix; the scheduler's
    lanes share one (a lock orders them; the states themselves are only read once stored)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("a prefix cache needs a positive size")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], States] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0  # prompt tokens served from the cache, and tokens looked up (hit rate = ratio)
        self.looked_up = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def longest(self, ids: Sequence[int]) -> tuple[int, States | None]:
        """The longest stored prefix of `ids`: its length and its states (cut to that length)."""
        with self._lock:
            return self._longest(ids)

    def _longest(self, ids: Sequence[int]) -> tuple[int, States | None]:
        best, found = 0, None
        for key in self._entries:
            shared = _shared_prefix(key, ids)
            if shared > best:
                best, found = shared, key
        self.looked_up += len(ids)
        if found is None:
            return 0, None
        self.hits += best
        self._entries.move_to_end(found)
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in self._entries[found]]

    def put(self, ids: Sequence[int], states: States) -> None:
        """Keep `states` (computed for exactly `ids`), dropping stored prompts that `ids` extends
        (it covers them) and then the least recently used beyond the budget."""
        with self._lock:
            self._put(tuple(ids), states)

    def _put(self, key: tuple[int, ...], states: States) -> None:
        size = _size(states)
        if not key or size > self.max_bytes:
            return
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        for old in [old for old in self._entries if _shared_prefix(old, key) == len(old)]:
            self._drop(old)
        self._entries[key] = states
        self._bytes += size
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[int, ...]) -> None:
        self._bytes -= _size(self._entries.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def _shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _size(states: States) -> int:
    return sum(t.numel() * t.element_size() for pair in states for t in pair)
