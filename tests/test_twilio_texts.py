"""The phone line's words: complete in every language, numbers read digit by digit, prefixes and keywords."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import yaml

from bot.channels.twilio_callers import identify
from bot.channels.twilio_texts import phone_texts, speakable, spell_digits, xml_safe
from bot.texts import LANGUAGES, builtin_personas

TEXTS = phone_texts()


def test_every_text_greeting_and_voice_exists_in_every_language_with_the_same_placeholders() -> None:
    data = yaml.safe_load(resources.files("bot.data").joinpath("twilio.yaml").read_text(encoding="utf-8"))
    for key, variants in data["texts"].items():
        assert set(variants) == set(LANGUAGES), key
        fields = {lang: set(re.findall(r"{(\w+)}", text)) for lang, text in variants.items()}
        assert len({frozenset(f) for f in fields.values()}) == 1, f"{key} placeholders differ: {fields}"
    for persona in [p.key for p in builtin_personas()] + ["own"]:
        assert set(data["greetings"][persona]) == set(LANGUAGES), persona
    assert set(data["voices"]) == set(LANGUAGES) and set(data["holding"]) == set(LANGUAGES)
    assert {lang: TEXTS.voice(lang).language[:2] for lang in LANGUAGES} == {lang: lang for lang in LANGUAGES}


@pytest.mark.parametrize(
    ("number", "locale", "country", "emergency"),
    [
        ("+380501234567", "uk-UA", "UA", "112"),
        ("+48601234567", "pl-PL", "PL", "112"),
        ("+79161234567", "ru-RU", None, "112"),
        ("+77011234567", "ru-KZ", None, "112"),
        ("+14155550100", "en-US", "US", "911"),
        ("+447700900123", "en-GB", "GB", "999"),
        ("+996555123456", "en", None, "112"),
        ("anonymous", "en", None, "112"),
    ],
)
def test_a_number_gives_language_here_and_country_and_emergency_number_from_the_helplines(
    number: str, locale: str, country: str | None, emergency: str
) -> None:
    caller = identify({"From": number, "CallSid": "CA1"}, TEXTS)
    assert (caller.locale, caller.country, caller.emergency) == (locale, country, emergency)


def test_keywords_are_whole_messages_in_any_case() -> None:
    assert [TEXTS.keyword(w) for w in ("STOP", " stop! ", "Unsubscribe.", "СТОП", "help", "Pomoc", "/human")] == [
        "stop",
        "stop",
        "stop",
        "stop",
        "help",
        "help",
        "human",
    ]
    assert TEXTS.keyword("please stop") is None and TEXTS.keyword("I need help") is None
    assert TEXTS.keyword("yes") == "start", "quoted in the YAML: not read as a boolean"


def test_numbers_are_spoken_digit_by_digit_in_their_groups() -> None:
    assert spell_digits("+380800500335") == "+ 3 8 0, 8 0 0, 5 0 0, 3 3 5"  # dialled as heard
    assert spell_digits("0 800 500 335") == "0, 8 0 0, 5 0 0, 3 3 5"
    assert spell_digits("7333") == "7 3 3 3"
    assert spell_digits("1234567") == "1 2 3, 4 5 6 7", "no digit left alone at the end"
    spoken = speakable("Call **116 123** (free) or see https://example.org/help now.", spell_numbers=True)
    assert spoken == "Call 1 1 6, 1 2 3 (free) or see now."
    assert speakable("Call 112 now", spell_numbers=False) == "Call 112 now"


def test_xml_safe_keeps_every_language_and_emoji_and_drops_control_characters() -> None:
    assert xml_safe("Привіт\x00 cześć\x1b 🙂\tok\n") == "Привіт cześć 🙂\tok\n"
