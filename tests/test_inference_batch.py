"""The running batch's key/value layout: rows join and leave, the window keeps every row's columns."""

from __future__ import annotations

import torch

from inference.batch import CrossAttentionCache, SelfAttentionCache


def states(length: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, 2, length, 3, generator=generator), torch.randn(1, 2, length, 3, generator=generator))]


def test_rows_keep_their_states_through_joins_leaves_and_moves():
    cache = SelfAttentionCache(1, 2, 3, torch.float32, torch.device("cpu"))
    expected: dict[int, torch.Tensor] = {}  # row id -> its keys so far (heads, tokens, dim)
    order: list[int] = []  # row id per slot
    lengths = [5, 40, 1, 0, 70, 3, 12, 9]
    for step in range(90):
        if step < len(lengths):  # a newcomer, shorter or longer than the window
            rid, past = step, lengths[step]
            cache.add(states(past, rid) if past else None, past)
            expected[rid] = states(past, rid)[0][0][0] if past else torch.zeros(2, 0, 3)
            order.append(rid)
        if step % 7 == 3 and len(order) > 2:  # a row leaves; the last takes its slot
            gone = order[1]
            cache.remove(1)
            order[1] = order[-1]
            order.pop()
            del expected[gone]
        mask = cache.step_mask()[:, 0, 0]
        new = torch.full((len(order), 2, 1, 3), float(step))
        keys, _ = cache.update(new, new, 0)
        cache.advance()
        for slot, rid in enumerate(order):
            expected[rid] = torch.cat([expected[rid], new[slot]], dim=1)
            visible = mask[slot] == 0
            assert torch.equal(keys[slot][:, visible], expected[rid])
            assert torch.isfinite(keys[slot]).all()  # masked columns are weighted 0: never NaN
    assert cache.columns < 120  # the window moved back instead of growing without end


def test_layouts_reuse_one_storage_and_a_hint_sizes_the_rows():
    cache = SelfAttentionCache(1, 2, 3, torch.float32, torch.device("cpu"), rows_hint=6)
    for rid in range(6):
        cache.add(states(10, rid), 10)
    assert cache.row_capacity == 6  # no doubling from 4 as rows joined
    storages = set()
    for step in range(200):  # the window stays short: it moves back every few steps
        if step % 8 == 7:  # the oldest row leaves, a newcomer joins
            cache.remove(cache.starts.index(min(cache.starts)))
            cache.add(states(10, step), 10)
        cache.step_mask()
        new = torch.full((6, 2, 1, 3), float(step))
        cache.update(new, new, 0)
        cache.advance()
        if step >= 100:
            storages.add(cache.keys[0].untyped_storage().data_ptr())
    assert len(storages) == 1  # steady decoding lays the window out anew in place, allocating nothing


def test_cross_rows_keep_their_encoder_states():
    cache = CrossAttentionCache(1, 2, 3, torch.float32, torch.device("cpu"), max_columns=16)
    for rid, length in enumerate([4, 16, 7, 2, 9]):
        cache.add(states(length, rid))
    cache.remove(1)  # the 16-column row leaves; the 9-column row takes its slot
    assert cache.lengths == [4, 9, 7, 2]
    mask = cache.mask()[:, 0, 0]
    for slot, (rid, length) in enumerate([(0, 4), (4, 9), (2, 7), (3, 2)]):
        assert torch.equal(cache.layers[0].keys[slot][:, :length], states(length, rid)[0][0][0])
        assert (mask[slot] == 0).sum() == length
        assert torch.isfinite(cache.layers[0].keys[slot]).all()
