"""What the phone line says and the SMS channel texts, from bot/data/twilio.yaml, by the caller's language.

Words are data rather than code so that a translator, not a programmer, changes them; this module only
looks them up and turns text into something a text-to-speech voice reads well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from bot.texts import DataFileError, language_of

Keyword = Literal["stop", "start", "help", "human", "forget", "forget_confirmed"]
_KEYWORDS: tuple[Keyword, ...] = ("stop", "start", "help", "human", "forget", "forget_confirmed")
_FILE = "bot/data/twilio.yaml"


@dataclass(frozen=True, slots=True)
class Voice:
    """How one language is spoken and heard on a call."""

    voice: str  # <Say voice>, e.g. Google.uk-UA-Standard-A
    language: str  # BCP-47 tag for <Say language> and <Gather language>
    speech_model: str  # <Gather speechModel>


class PhoneTexts:
    """Lookups into twilio.yaml; every language falls back to English."""

    def __init__(self, data: dict[str, Any]) -> None:
        try:
            self._voices = {lang: Voice(**spec) for lang, spec in data["voices"].items()}
            self._languages = {str(prefix): str(locale) for prefix, locale in data["languages"].items()}
            self._withheld = frozenset(str(v).lower() for v in data["withheld"])
            self._keywords = {word.casefold(): kind for kind in _KEYWORDS for word in data["keywords"][kind]}
            self._greetings: dict[str, dict[str, str]] = data["greetings"]
            self._holding: dict[str, list[str]] = data["holding"]
            self._texts: dict[str, dict[str, str]] = data["texts"]
        except (KeyError, TypeError) as exc:
            raise DataFileError(f"{_FILE}: missing or malformed entry ({exc})") from exc
        tables = [self._voices, self._holding, *self._greetings.values(), *self._texts.values()]
        if any("en" not in table for table in tables) or "own" not in self._greetings:
            raise DataFileError(f"{_FILE}: every voice, greeting, holding list and text needs an 'en' entry")

    def voice(self, locale: str | None) -> Voice:
        return self._voices.get(language_of(locale), self._voices["en"])

    def text(self, key: str, locale: str | None, **fields: str) -> str:
        variants = self._texts[key]
        return variants.get(language_of(locale), variants["en"]).format(**fields)

    def greeting(self, persona_key: str | None, locale: str | None) -> str:
        """The persona's greeting; a caller with persona lines of their own gets the neutral one."""
        variants = self._greetings.get(persona_key or "own", self._greetings["own"])
        return variants.get(language_of(locale), variants["en"])

    def holding(self, locale: str | None, index: int) -> str:
        """The index-th holding phrase (the last one repeats)."""
        phrases = self._holding.get(language_of(locale), self._holding["en"])
        return phrases[min(index, len(phrases) - 1)]

    def keyword(self, body: str) -> Keyword | None:
        """The SMS keyword a message is, if it is exactly one entry of a keyword list (any case and spacing,
        trailing '.' or '!')."""
        words = " ".join(body.strip().rstrip(".!").split()).casefold()
        return self._keywords.get(words)

    def locale_for(self, number: str | None) -> str:
        """The language of the longest matching prefix of an E.164 number; English when unknown."""
        if number:
            for length in range(min(len(number), 5), 1, -1):
                locale = self._languages.get(number[:length])
                if locale is not None:
                    return locale
        return "en"

    def is_withheld(self, sender: str) -> bool:
        return sender.strip().lower() in self._withheld


@cache
def phone_texts() -> PhoneTexts:
    """The bundled texts, read once."""
    try:
        raw = resources.files("bot.data").joinpath("twilio.yaml").read_text(encoding="utf-8")
        return PhoneTexts(yaml.safe_load(raw))
    except (OSError, yaml.YAMLError) as exc:
        raise DataFileError(f"{_FILE}: {exc}") from exc


_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_URL = re.compile(r"https?://\S+|www\.\S+")
_MARKUP = re.compile(r"[*_`#<>\[\]|~]")
_NUMBER = re.compile(r"\+?\d(?:[ \-]?\d){2,}")  # three digits or more: 112, 7333, 0 800 500 335 (not 24/7)
_BULLET = re.compile(r"^\s*[-•*]\s+")
_SPACES = re.compile(r"\s+")


def xml_safe(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (a model may emit control characters): TwiML must parse."""
    return _NOT_XML.sub("", text)


def spell_digits(number: str) -> str:
    """'0 800 500 335' -> '0 8 0 0, 5 0 0, 3 3 5': a voice reads each digit, with a pause between groups;
    an international number keeps its '+' (read "plus"), without which it cannot be dialled as heard."""
    plus = "+ " if number.strip().startswith("+") else ""
    groups = [g for g in re.split(r"[ ()\-]+", number.strip().lstrip("+")) if g]
    if len(groups) == 1 and len(groups[0]) > 4:  # one long run of digits: pause every three
        run = groups[0]
        groups = [run[i : i + 3] for i in range(0, len(run), 3)]
        if len(groups[-1]) == 1:  # never leave one digit alone at the end
            groups[-2:] = [groups[-2] + groups[-1]]
    return plus + ", ".join(" ".join(group) for group in groups)


def speakable(text: str, *, spell_numbers: bool = False) -> str:
    """Text fit for <Say>: no links, markup or list bullets, each line its own sentence (a voice pauses
    there), and, for helpline texts, phone numbers read digit by digit."""
    lines = [kept for line in _URL.sub(" ", text).splitlines() if (kept := _BULLET.sub("", line).strip())]
    text = " ".join(line if line[-1] in ".!?:;…" else line + "." for line in lines[:-1])
    text = f"{text} {lines[-1]}" if lines else ""
    text = _MARKUP.sub(" ", text)
    if spell_numbers:
        text = _NUMBER.sub(lambda match: spell_digits(match.group()), text)
    return _SPACES.sub(" ", text).strip()


__all__ = ["Keyword", "PhoneTexts", "Voice", "phone_texts", "speakable", "spell_digits", "xml_safe"]
