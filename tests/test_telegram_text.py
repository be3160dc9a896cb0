"""Splitting long replies for Telegram, and the channel's text file."""

from __future__ import annotations

import pytest

from bot.channels.telegram_text import MAX_MESSAGE, _texts, split_message, tg_text, utf16_len
from bot.texts import LANGUAGES


def test_short_text_is_one_part() -> None:
    assert split_message("  Hello there.  ") == ["Hello there."]


def test_paragraph_boundary_is_preferred() -> None:
    first = "First paragraph. " * 150  # ~2550 chars
    second = "Second paragraph, which is long too. " * 60  # ~2220 chars
    parts = split_message(first.strip() + "\n\n" + second.strip())
    assert parts == [first.strip(), second.strip()]


def test_sentence_boundary_when_there_is_no_paragraph() -> None:
    text = " ".join(f"Sentence number {i} ends here." for i in range(400))
    parts = split_message(text)
    assert len(parts) > 1
    assert all(utf16_len(p) <= MAX_MESSAGE for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == text  # nothing lost, nothing duplicated


def test_words_are_not_cut_without_punctuation() -> None:
    text = " ".join(["word"] * 3000)
    parts = split_message(text)
    assert all(p.startswith("word") and p.endswith("word") for p in parts)
    assert " ".join(parts) == text


def test_limit_counts_utf16_units() -> None:
    """Emoji take two UTF-16 units: 3000 of them (6000 units) cannot go in one message."""
    text = "😊" * 3000
    parts = split_message(text)
    assert len(parts) == 2
    assert all(utf16_len(p) <= MAX_MESSAGE for p in parts)
    assert "".join(parts) == text


def test_every_language_has_every_person_facing_text() -> None:
    for key, variants in _texts().items():
        if key.startswith("operator_"):
            continue
        assert set(LANGUAGES) <= set(variants), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_texts_take_their_fields(language: str) -> None:
    welcome = tg_text("welcome", language, helplines="HELP-LINES")
    assert "HELP-LINES" in welcome and "/forget" in welcome and "/human" in welcome
    assert "{" not in tg_text("group_notice", language, link="https://t.me/x")
