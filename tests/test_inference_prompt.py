"""Prompt formats of both families and the cut to the token budget."""

from __future__ import annotations

import pytest
from transformers import BlenderbotConfig, BlenderbotSmallConfig, GPT2Config, T5Config

from inference.api import ChatMessage
from inference.prompt import PromptBuilder, default_prompt_budget, family_of, split_messages
from inference.synthetic import train_tokenizer

PERSONA = ["I am kind.", "your persona: I like tea."]
TURNS = [
    ChatMessage("user", "hello there, my dog died yesterday"),
    ChatMessage("assistant", "I'm so sorry to hear that. What was his name?"),
    ChatMessage("user", "Max. he was fourteen and I miss him"),
    ChatMessage("assistant", "Fourteen years is a whole chapter of your life."),
    ChatMessage("user", "thanks, it hurts a lot"),
]
SEQ2SEQ_TEXT = (
    "your persona: I am kind.  your persona: I like tea.   hello there, my dog died yesterday  "
    "I'm so sorry to hear that. What was his name?   Max. he was fourteen and I miss him  "
    "Fourteen years is a whole chapter of your life.   thanks, it hurts a lot"
)


@pytest.fixture(scope="module", params=["seq2seq", "causal"])
def tokenizer(request):
    return train_tokenizer(request.param, 600)


def family(tokenizer) -> str:
    return "seq2seq" if tokenizer.pad_token == "<pad>" else "causal"


def test_family_of_configs():
    assert family_of(BlenderbotConfig()) == "seq2seq"
    assert family_of(BlenderbotSmallConfig()) == "seq2seq"
    assert family_of(T5Config()) == "seq2seq"
    assert family_of(GPT2Config()) == "causal"


def test_default_budgets():
    assert default_prompt_budget("seq2seq", BlenderbotConfig(max_position_embeddings=128)) == 128
    assert default_prompt_budget("causal", GPT2Config()) == 256
    assert default_prompt_budget("causal", GPT2Config(n_positions=64)) == 32


def test_split_messages_turns_system_into_persona_lines():
    messages = [ChatMessage("system", "I am kind.\n\n  I like tea. "), *TURNS[:2], ChatMessage("system", "I knit.")]
    persona, turns = split_messages(messages)
    assert persona == ["I am kind.", "I like tea.", "I knit."]
    assert turns == TURNS[:2]


def test_full_prompt_format(tokenizer):
    builder = PromptBuilder(tokenizer, family(tokenizer), 1000)
    ids = builder.prompt_ids(PERSONA, TURNS)
    eos = tokenizer.eos_token_id
    if family(tokenizer) == "seq2seq":
        assert ids == tokenizer(SEQ2SEQ_TEXT, add_special_tokens=False)["input_ids"] + [eos]
    else:
        segments = ["your persona: I am kind.", "your persona: I like tea."] + [t.content for t in TURNS]
        expected = [i for s in segments for i in tokenizer(s, add_special_tokens=False)["input_ids"] + [eos]]
        assert ids == expected
        assert ids.count(eos) == len(segments)


def test_cut_drops_oldest_turns_and_keeps_persona_and_newest(tokenizer):
    fam = family(tokenizer)
    full = len(PromptBuilder(tokenizer, fam, 1000).prompt_ids(PERSONA, TURNS))
    without_first = len(PromptBuilder(tokenizer, fam, 1000).prompt_ids(PERSONA, TURNS[1:]))
    budget = without_first  # exactly room for everything but the oldest turn
    assert budget < full
    ids = PromptBuilder(tokenizer, fam, budget).prompt_ids(PERSONA, TURNS)
    text = tokenizer.decode(ids)
    assert len(ids) <= budget
    assert "hello there" not in text
    assert "What was his name?" in text  # as much history as fits is kept
    assert "your persona: I am kind." in text and "your persona: I like tea." in text
    assert text.rstrip().endswith("thanks, it hurts a lot" + tokenizer.eos_token)


def test_cut_keeps_persona_and_newest_user_turn_when_they_fit(tokenizer):
    fam = family(tokenizer)
    shortest = PromptBuilder(tokenizer, fam, 1000).prompt_ids(PERSONA, TURNS[-1:])
    ids = PromptBuilder(tokenizer, fam, len(shortest)).prompt_ids(PERSONA, TURNS)
    assert ids == shortest


def test_newest_user_turn_and_later_replies_are_never_dropped(tokenizer):
    fam = family(tokenizer)
    turns = TURNS[:3] + [ChatMessage("assistant", "Take your time.")]
    shortest = PromptBuilder(tokenizer, fam, 1000).prompt_ids([], turns[2:])
    ids = PromptBuilder(tokenizer, fam, len(shortest)).prompt_ids([], turns)
    assert ids == shortest


def test_too_long_for_budget_cuts_tokens_from_the_left(tokenizer):
    fam = family(tokenizer)
    long_turn = ChatMessage("user", "I can't sleep and work is drowning me " * 20 + "what do I do")
    full = PromptBuilder(tokenizer, fam, 10_000).prompt_ids(PERSONA, [long_turn])
    ids = PromptBuilder(tokenizer, fam, 24).prompt_ids(PERSONA, TURNS[:2] + [long_turn])
    assert ids == full[-24:]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids).rstrip().endswith("what do I do" + tokenizer.eos_token)


def test_response_ids_end_with_eos(tokenizer):
    builder = PromptBuilder(tokenizer, family(tokenizer), 64)
    ids = builder.response_ids("I hear you.")
    assert ids[:-1] == tokenizer("I hear you.", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id


def test_long_history_is_cut_to_budget(tokenizer):
    builder = PromptBuilder(tokenizer, family(tokenizer), 64)
    turns = [ChatMessage("user" if i % 2 == 0 else "assistant", f"turn number {i} of a long chat") for i in range(201)]
    ids = builder.prompt_ids(PERSONA, turns)
    assert len(ids) <= 64
    text = tokenizer.decode(ids)
    assert "turn number 200 of a long chat" in text and "your persona: I am kind." in text
    # one more turn of history would not have fit
    kept = sum(f"turn number {i} " in text for i in range(201))
    more = PromptBuilder(tokenizer, family(tokenizer), 10_000).prompt_ids(PERSONA, turns[200 - kept :])
    assert len(more) > 64
