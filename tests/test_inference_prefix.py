"""Prefix caching: a follow-up turn reuses its earlier prompt's states and answers the same."""

from __future__ import annotations

import torch

from inference.api import ChatMessage, GenerationParams
from inference.engine import load_model
from inference.prefix import PrefixCache
from tests.inference_fixtures import tiny_model_dirs  # noqa: F401

GREEDY = GenerationParams(temperature=0, num_beams=1, min_tokens=8, max_tokens=10)
FIRST = [ChatMessage("system", "I like tea."), ChatMessage("user", "I can't sleep")]
FOLLOW_UP = [*FIRST, ChatMessage("assistant", "What keeps you awake?"), ChatMessage("user", "work, mostly")]


def states(tokens: int, fill: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two layers of (keys, values) for `tokens` positions: 2 x 2 x tokens x 4 floats each."""
    return [(torch.full((1, 2, tokens, 4), fill), torch.full((1, 2, tokens, 4), fill)) for _ in range(2)]


def size(tokens: int) -> int:
    """Bytes of `states(tokens)`: layers x (keys, values) x heads x dim x 4-byte floats per token."""
    return tokens * 2 * 2 * 2 * 4 * 4


def test_longest_stored_prefix_is_found_and_cut_to_length():
    cache = PrefixCache(max_bytes=2**20)
    cache.put([1, 2, 3, 4, 5], states(5, 1.0))
    cache.put([1, 2, 9], states(3, 2.0))
    known, found = cache.longest([1, 2, 3, 4, 7, 8])
    assert known == 4
    assert found[0][0].shape == (1, 2, 4, 4) and float(found[0][0][0, 0, 0, 0]) == 1.0
    assert cache.longest([6, 1, 2]) == (0, None)
    assert (cache.hits, cache.looked_up) == (4, 9)


def test_a_prompt_replaces_the_stored_prompts_it_extends():
    cache = PrefixCache(max_bytes=2**20)
    cache.put([1, 2, 3], states(3))
    cache.put([1, 2, 3, 4, 5], states(5))
    assert len(cache) == 1 and cache.bytes == size(5)


def test_least_recently_used_prompts_leave_first_within_the_byte_budget():
    cache = PrefixCache(max_bytes=2 * size(3))
    cache.put([1, 1, 1], states(3))
    cache.put([2, 2, 2], states(3))
    cache.longest([1, 1, 1, 5])  # touches the first
    cache.put([3, 3, 3], states(3))
    assert cache.longest([2, 2, 2])[0] == 0
    assert cache.longest([1, 1, 1])[0] == 3 and cache.longest([3, 3, 3])[0] == 3
    assert cache.bytes <= cache.max_bytes


def test_follow_up_turn_starts_from_the_cached_prompt_and_answers_as_plain_generate(tiny_model_dirs):  # noqa: F811
    engine = load_model(str(tiny_model_dirs["causal"]))
    uncached = load_model(str(tiny_model_dirs["causal"]), prefix_cache_mb=0)
    assert engine.prefix_cache is not None and uncached.prefix_cache is None
    first, follow_up = engine.prompt_ids(FIRST), engine.prompt_ids(FOLLOW_UP)
    assert follow_up[: len(first)] == first  # the premise: a next turn extends the last prompt
    for prompt in (first, follow_up):
        config, limit = engine.request(GREEDY, len(prompt))
        served = engine.generate([prompt], config, [limit])[0]
        assert served.token_ids == uncached.generate_plain(prompt, config, limit).token_ids
        assert len(served.token_ids) >= 8
    assert engine.prefix_cache.hits == len(first) - 1  # the follow-up computed only its new tokens
    with torch.inference_mode():
        reused, _ = engine._prompt_states(follow_up[:-1])
        fresh, _ = uncached._prompt_states(follow_up[:-1])
    for (k1, v1), (k2, v2) in zip(reused, fresh, strict=True):
        torch.testing.assert_close(k1, k2, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-5)
