"""Where a person can reach a human now: helplines and the emergency number for their country.

The country comes from, in this order: the user's explicit setting, the phone number's E.164
prefix, the locale ("uk-UA" -> UA, "pl" -> PL). Anything unknown gets the international
fallback, never nothing. The numbers live in `data/helplines.yaml` with their source and
verification date; see the notice there before deploying.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.crisis.levels import Tag

DEFAULT_PATH = Path(__file__).with_name("data") / "helplines.yaml"
INTERNATIONAL = "INT"
_PHONE_JUNK = re.compile(r"[\s\-().]")


class HelplineError(ValueError):
    """A helplines file that cannot be used; names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Helpline:
    name: str
    number: str
    hours: str
    languages: tuple[str, ...]
    topics: frozenset[str]
    source: str
    verified: str | None
    alt_number: str | None = None


@dataclass(frozen=True, slots=True)
class EmergencyNumber:
    number: str
    name: str
    source: str
    verified: str | None


@dataclass(frozen=True, slots=True)
class Resources:
    """Everything shown to one user: their country's emergency number and helplines."""

    country: str  # ISO 3166 alpha-2, or "INT" for the international fallback
    name: str
    emergency: EmergencyNumber
    helplines: tuple[Helpline, ...]

    def pick(self, tags: Iterable[Tag] = (), limit: int = 3) -> tuple[Helpline, ...]:
        """The lines to show: a child's line first, then the abuse line and the general crisis lines,
        those first when the person is at risk themselves (the abuse line still follows)."""
        present = set(tags)
        child = [h for h in self.helplines if "minor" in h.topics] if Tag.MINOR in present else []
        abuse = [h for h in self.helplines if "abuse" in h.topics] if Tag.ABUSE in present else []
        general = [h for h in self.helplines if h.topics & {"suicide", "crisis"}]
        ordered = child + (general + abuse if Tag.SELF in present else abuse + general)
        chosen = list(dict.fromkeys(ordered)) or list(self.helplines)  # other topics only if nothing else
        return tuple(chosen[:limit])


class HelplineDirectory:
    """All countries' resources plus the rules for finding a user's country."""

    def __init__(self, countries: Mapping[str, Resources], fallback: Resources, prefixes: Mapping[str, str],
                 locales: Mapping[str, str], aliases: Mapping[str, str]) -> None:  # fmt: skip
        self.countries = dict(countries)
        self.fallback = fallback
        self._prefixes = sorted(prefixes.items(), key=lambda kv: -len(kv[0]))  # longest prefix wins
        self._locales = dict(locales)
        self._aliases = dict(aliases)

    @classmethod
    def load(cls, path: Path | None = None) -> HelplineDirectory:
        """Read and check the helplines file; raises HelplineError naming the faulty entry."""
        return _parse(path or DEFAULT_PATH)

    def country_for(self, *, country: str | None = None, phone: str | None = None, locale: str | None = None) -> str:
        """The user's country code, or "INT" when nothing identifies a known country."""
        if country and country.strip():
            code = country.strip().upper()
            code = self._aliases.get(code, code)
            return code if code in self.countries else INTERNATIONAL
        if phone and (code := self._by_phone(phone)):
            return code
        if locale and (code := self._by_locale(locale)):
            return code
        return INTERNATIONAL

    def resources(
        self, *, country: str | None = None, phone: str | None = None, locale: str | None = None
    ) -> Resources:
        """The resources for the user (see `country_for`)."""
        return self.countries.get(self.country_for(country=country, phone=phone, locale=locale), self.fallback)

    def _by_phone(self, phone: str) -> str | None:
        number = _PHONE_JUNK.sub("", phone)
        if number.startswith("00"):
            number = "+" + number[2:]
        if not number.startswith("+"):
            return None  # a national number says nothing about the country
        return next((code for prefix, code in self._prefixes if number.startswith(prefix)), None)

    def _by_locale(self, locale: str) -> str | None:
        tag = locale.strip().replace("_", "-").lower()
        if tag in self._locales:
            return self._locales[tag]
        parts = tag.split("-")
        region = parts[-1].upper() if len(parts) > 1 else ""
        if region in self.countries:
            return region
        return self._locales.get(parts[0])


def _parse(path: Path) -> HelplineDirectory:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise HelplineError(f"{path}: cannot read helplines: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("countries"), dict) or "international" not in doc:
        raise HelplineError(f"{path}: needs 'countries' (a mapping) and 'international'")
    countries: dict[str, Resources] = {}
    prefixes: dict[str, str] = {}
    locales: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for code, entry in doc["countries"].items():
        where = f"{path}: countries.{code}"
        if not isinstance(code, str) or not re.fullmatch(r"[A-Z]{2}", code):
            raise HelplineError(f"{where}: country codes are ISO 3166 alpha-2 in capitals")
        countries[code] = _resources(code, entry, where)
        for prefix in _strings(entry, "phone_prefixes", where):
            if not re.fullmatch(r"\+\d{1,4}", prefix):
                raise HelplineError(f"{where}.phone_prefixes: {prefix!r} is not an E.164 prefix like '+48'")
            prefixes[prefix] = code
        for locale in _strings(entry, "locales", where):
            locales[locale.replace("_", "-").lower()] = code
        for alias in _strings(entry, "aliases", where, required=False):
            aliases[alias.upper()] = code
    fallback = _resources(INTERNATIONAL, doc["international"], f"{path}: international")
    return HelplineDirectory(countries, fallback, prefixes, locales, aliases)


def _resources(code: str, entry: Any, where: str) -> Resources:
    if not isinstance(entry, dict):
        raise HelplineError(f"{where}: must be a mapping")
    emergency = entry.get("emergency")
    if not isinstance(emergency, dict):
        raise HelplineError(f"{where}: missing 'emergency'")
    lines = entry.get("helplines")
    if not isinstance(lines, list) or not lines:
        raise HelplineError(f"{where}: 'helplines' must be a non-empty list")
    return Resources(
        country=code,
        name=_text(entry, "name", where),
        emergency=EmergencyNumber(
            number=_text(emergency, "number", f"{where}.emergency"),
            name=_text(emergency, "name", f"{where}.emergency"),
            source=_text(emergency, "source", f"{where}.emergency"),
            verified=_verified(emergency, f"{where}.emergency"),
        ),
        helplines=tuple(_helpline(line, f"{where}.helplines[{i}]") for i, line in enumerate(lines)),
    )


def _helpline(entry: Any, where: str) -> Helpline:
    if not isinstance(entry, dict):
        raise HelplineError(f"{where}: must be a mapping")
    alt = entry.get("alt_number")
    if alt is not None and not isinstance(alt, str):
        raise HelplineError(f"{where}: 'alt_number' must be text")
    return Helpline(
        name=_text(entry, "name", where),
        number=_text(entry, "number", where),
        hours=_text(entry, "hours", where),
        languages=tuple(_strings(entry, "languages", where)),
        topics=frozenset(_strings(entry, "topics", where)),
        source=_text(entry, "source", where),
        verified=_verified(entry, where),
        alt_number=alt,
    )


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise HelplineError(f"{where}: '{key}' must be non-empty text (quote numbers: \"112\")")
    return value.strip()


def _strings(entry: Mapping[str, Any], key: str, where: str, required: bool = True) -> list[str]:
    value = entry.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise HelplineError(f"{where}: '{key}' must be a non-empty list of text")
    return value


def _verified(entry: Mapping[str, Any], where: str) -> str | None:
    if "verified" not in entry:
        raise HelplineError(f"{where}: 'verified' is required (a date, or null when not yet verified)")
    value = entry["verified"]
    if value is None:
        return None
    return str(value)
