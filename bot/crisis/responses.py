"""The safe reply for a level, in the user's language, with the helplines of their country.

Text lives in `data/responses.yaml` (reviewers edit wording there, not here); this module
only picks and assembles the parts. A reply below `concern` is the short `reminder`, so the
dialogue can append it to a model answer while a conversation's sticky level stays raised.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.crisis.helplines import Helpline, HelplineDirectory, Resources
from bot.crisis.levels import Assessment, Level, Tag

DEFAULT_PATH = Path(__file__).with_name("data") / "responses.yaml"
FALLBACK_LANGUAGE = "en"
SITUATIONS = ("self", "abuse", "third_party", "harm_to_others", "military_danger", "minor")
_SITUATION_ORDER = (Tag.THIRD_PARTY, Tag.HARM_TO_OTHERS, Tag.ABUSE, Tag.MILITARY_DANGER)
_LANGUAGE_ALIASES = {"ua": "uk", "be": "ru"}
# Every text key and the placeholders it may use.
_KEYS: dict[str, frozenset[str]] = {
    "opening.concern": frozenset(),
    "opening.crisis": frozenset(),
    "opening.emergency": frozenset(),
    **{f"ask_safety.{s}": frozenset() for s in SITUATIONS if s != "minor"},
    "reach_person": frozenset(),
    "emergency_first": frozenset({"emergency"}),
    "emergency_line": frozenset({"emergency"}),
    "closing": frozenset(),
    "helpline": frozenset({"name", "number", "hours"}),
    "reminder": frozenset({"helpline", "emergency"}),
    **{f"situation.{s}": frozenset() for s in SITUATIONS},
}


class ResponseError(ValueError):
    """A responses file that cannot be used; names the file, language and key."""


@dataclass(frozen=True, slots=True)
class SafeMessage:
    """A reply ready to send, and what it showed (for the audit trail)."""

    text: str
    language: str
    level: Level
    resources: Resources
    helplines: tuple[Helpline, ...]

    @property
    def shown(self) -> str:
        """Which resources were shown, e.g. "UA: 112; Lifeline Ukraine... 7333"."""
        lines = "; ".join(f"{h.name} {h.number}" for h in self.helplines)
        return f"{self.resources.country}: {self.resources.emergency.number}; {lines}"


class SafeResponder:
    """Builds safe replies from the texts and the helpline directory; read-only, share it."""

    def __init__(self, texts: Mapping[str, Mapping[str, str]], directory: HelplineDirectory) -> None:
        self.texts = texts
        self.directory = directory

    @classmethod
    def load(cls, path: Path | None = None, helplines: Path | None = None) -> SafeResponder:
        """Read the texts and the helplines; raises ResponseError / HelplineError on a bad file."""
        return cls(_parse(path or DEFAULT_PATH), HelplineDirectory.load(helplines))

    def language(self, locale: str | None) -> str:
        """ "uk-UA" -> "uk"; anything without texts falls back to English."""
        code = (locale or FALLBACK_LANGUAGE).replace("_", "-").split("-")[0].lower()
        code = _LANGUAGE_ALIASES.get(code, code)
        return code if code in self.texts else FALLBACK_LANGUAGE

    def reply(
        self,
        assessment: Assessment | Level,
        *,
        locale: str | None = None,
        country: str | None = None,
        phone: str | None = None,
    ) -> SafeMessage:
        """The safe reply for an assessment (or a bare level, e.g. a conversation's sticky level)."""
        level = assessment if isinstance(assessment, Level) else assessment.level
        tags = frozenset() if isinstance(assessment, Level) else assessment.tags
        lang = self.language(locale)
        texts = self.texts[lang]
        resources = self.directory.resources(country=country, phone=phone, locale=locale)
        lines = resources.pick(tags)
        emergency = resources.emergency.number
        if level < Level.CONCERN:
            first = lines[0] if lines else None
            helpline = f"{first.name} {first.number}" if first else emergency
            text = texts["reminder"].format(helpline=helpline, emergency=emergency)
            return SafeMessage(text, lang, level, resources, lines[:1])
        listed = "\n".join(texts["helpline"].format(name=h.name, number=h.number, hours=h.hours) for h in lines)
        situations = _situations(tags)
        situation = "\n".join(texts[f"situation.{name}"] for name in situations)
        if level >= Level.EMERGENCY:
            parts = [texts["emergency_first"].format(emergency=emergency), texts["opening.emergency"], situation]
        elif level == Level.CRISIS:
            parts = [texts["opening.crisis"], situation]
        else:
            parts = [texts["opening.concern"], texts[f"ask_safety.{situations[0]}"]]  # about their situation
        if Tag.MINOR in tags:
            parts.append(texts["situation.minor"])
        parts += [texts["reach_person"], listed]
        if level < Level.EMERGENCY:
            parts.append(texts["emergency_line"].format(emergency=emergency))
        parts.append(texts["closing"])
        return SafeMessage("\n".join(parts), lang, level, resources, lines)


def _situations(tags: Iterable[Tag]) -> list[str]:
    """The situation lines to show: the person's own danger first when they are at risk themselves
    (an overdose told beside "my children are here" must not get only "call help for them"), then
    the first other situation present; "self" when nothing else is known."""
    present = set(tags)
    other = next((str(t) for t in _SITUATION_ORDER if t in present), None)
    chosen = ["self"] if Tag.SELF in present or other is None else []
    return chosen + ([other] if other else [])


def _parse(path: Path) -> dict[str, dict[str, str]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ResponseError(f"{path}: cannot read responses: {exc}") from exc
    languages = doc.get("languages") if isinstance(doc, dict) else None
    if not isinstance(languages, dict) or FALLBACK_LANGUAGE not in languages:
        raise ResponseError(f"{path}: needs 'languages' with at least '{FALLBACK_LANGUAGE}'")
    return {str(lang): _language_texts(entry, f"{path}: languages.{lang}") for lang, entry in languages.items()}


def _language_texts(entry: Any, where: str) -> dict[str, str]:
    flat = _flatten(entry, where)
    missing = set(_KEYS) - set(flat)
    if missing:
        raise ResponseError(f"{where}: missing text(s) {sorted(missing)}")
    unknown = set(flat) - set(_KEYS)
    if unknown:
        raise ResponseError(f"{where}: unknown key(s) {sorted(unknown)}")
    for key, text in flat.items():
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        if not used <= _KEYS[key]:
            allowed = ", ".join(sorted(_KEYS[key])) or "none"
            raise ResponseError(
                f"{where}.{key}: unknown placeholder(s) {sorted(used - _KEYS[key])}; allowed: {allowed}"
            )
    return flat


def _flatten(entry: Any, where: str, prefix: str = "") -> dict[str, str]:
    if not isinstance(entry, dict):
        raise ResponseError(f"{where}{'.' + prefix.rstrip('.') if prefix else ''}: must be a mapping of texts")
    flat: dict[str, str] = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, where, f"{prefix}{key}."))
        elif isinstance(value, str) and value.strip():
            flat[f"{prefix}{key}"] = value.strip()
        else:
            raise ResponseError(f"{where}.{prefix}{key}: must be non-empty text")
    return flat
