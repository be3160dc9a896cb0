"""What the Telegram channel says: its fixed texts (bot/data/telegram.yaml) and cutting long replies
into message-sized parts at paragraph, then sentence, then word boundaries."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import yaml

from bot.texts import DataFileError, language_of

MAX_MESSAGE = 4096  # Telegram's limit, counted in UTF-16 code units
_SENTENCE_END = re.compile(r"[.!?…。]+[\"'»”)\]]*\s")
_WORD_END = re.compile(r"\s")


@cache
def _texts() -> dict[str, dict[str, str]]:
    source = resources.files("bot.data").joinpath("telegram.yaml")
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataFileError(f"bot/data/telegram.yaml: {exc}") from exc
    if not isinstance(data, dict) or any(not isinstance(v, dict) or "en" not in v for v in data.values()):
        raise DataFileError("bot/data/telegram.yaml: every entry needs at least an 'en' text")
    return data


def tg_text(key: str, locale: str | None = None, **fields: object) -> str:
    """A Telegram text in the person's language (English when there is no translation), filled in."""
    variants = _texts()[key]
    template = variants.get(language_of(locale), variants["en"])
    return template.format(**fields) if fields else template


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fitting_prefix(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 code units (astral characters take two)."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 code units, ending in "…" when cut."""
    if utf16_len(text) <= limit:
        return text
    return text[: _fitting_prefix(text, limit - 1)] + "…"


def _cut_point(window: str) -> int:
    """Where to end a part inside `window`: the last paragraph break, else line break, else sentence end,
    else space, looking only at the second half so no part comes out tiny; a hard cut if there is none."""
    floor = len(window) // 2
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator, floor)
        if at > 0:
            return at + len(separator)
    for pattern in (_SENTENCE_END, _WORD_END):
        ends = [m.end() for m in pattern.finditer(window, floor)]
        if ends:
            return ends[-1]
    return len(window)


def split_message(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Cut a reply into parts Telegram accepts, each ending at the cleanest boundary available."""
    parts: list[str] = []
    rest = text.strip()
    while utf16_len(rest) > limit:
        window = rest[: _fitting_prefix(rest, limit)]
        cut = _cut_point(window)
        part, rest = rest[:cut].strip(), rest[cut:].strip()
        if part:
            parts.append(part)
    if rest:
        parts.append(rest)
    return parts
