"""Fixed texts and personas shipped as data files, looked up by the user's language."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

LANGUAGES = ("en", "uk", "ru", "pl")


class DataFileError(Exception):
    """A bundled data file is missing or malformed."""


def _load(name: str) -> Any:
    try:
        return yaml.safe_load(resources.files("bot.data").joinpath(name).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataFileError(f"bot/data/{name}: {exc}") from exc


def language_of(locale: str | None) -> str:
    """'uk-UA' -> 'uk'; anything we have no texts for -> 'en'."""
    code = (locale or "en").replace("_", "-").split("-")[0].lower()
    return code if code in LANGUAGES else "en"


@cache
def _messages() -> dict[str, dict[str, str]]:
    data = _load("messages.yaml")
    if not isinstance(data, dict) or any(not isinstance(v, dict) or "en" not in v for v in data.values()):
        raise DataFileError("bot/data/messages.yaml: every entry needs at least an 'en' text")
    return data


def text(key: str, locale: str | None = None) -> str:
    """A fixed text in the user's language, English when there is no translation."""
    variants = _messages()[key]
    return variants.get(language_of(locale), variants["en"])


@dataclass(frozen=True, slots=True)
class PersonaSpec:
    key: str
    name: str
    description: str
    lines: list[str]


@cache
def builtin_personas() -> tuple[PersonaSpec, ...]:
    """The personas shipped with the bot; the first is the default."""
    data = _load("personas.yaml")
    try:
        personas = tuple(PersonaSpec(p["key"], p["name"], p.get("description", ""), list(p["lines"])) for p in data)
    except (TypeError, KeyError) as exc:
        raise DataFileError(f"bot/data/personas.yaml: each persona needs key, name and lines ({exc})") from exc
    if not personas:
        raise DataFileError("bot/data/personas.yaml: no personas")
    return personas
