"""Reading and checking the versioned lexicon files the rule layer runs on.

Risk words change faster than code (new slang, a new emoji, a reviewer's correction), so they
live in YAML under `bot/crisis/data/lexicon/`. Each file carries a `version` that is copied
into every piece of evidence it produces. A malformed file stops the service at start with a
`LexiconError` naming the file and the entry, never silently dropping a rule.

A file may hold any of these sections (all files of a directory are merged):

    version: "en-1"                 # required
    classes: {NAME: [term, ...]}     # word classes used as @NAME in patterns
    negation: {cues: [...], breaks: [...], window: 3}
    contexts: {name: {patterns: [...], with: [ctx], without: [ctx]}}   # message-level readings
    idioms: [{id, patterns}]         # spans that are figures of speech ("dying to see")
    rules: [{id, level, tags, facets, patterns, negatable, unless}]
    combinations: [{id, level, tags, all_of: [[facet, ...], ...]} | {id, level, tags, at_least, of}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.crisis.levels import Level, Tag
from bot.crisis.patterns import Pattern, PatternError, compile_pattern

DEFAULT_DIR = Path(__file__).with_name("data") / "lexicon"

_SECTIONS = {"version", "description", "classes", "negation", "contexts", "idioms", "rules", "combinations"}
_RULE_KEYS = {"id", "level", "tags", "facets", "patterns", "negatable", "unless", "note"}
_COMBO_KEYS = {"id", "level", "tags", "all_of", "at_least", "of", "note"}
_CONTEXT_KEYS = {"patterns", "with", "without", "note"}


class LexiconError(ValueError):
    """A lexicon file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Patterns that, when one matches un-negated and outside an idiom, raise the level."""

    id: str
    level: Level
    tags: frozenset[Tag]
    facets: frozenset[str]
    patterns: tuple[Pattern, ...]
    negatable: bool
    unless: frozenset[str]
    version: str


@dataclass(frozen=True, slots=True)
class Idiom:
    id: str
    patterns: tuple[Pattern, ...]
    version: str


@dataclass(frozen=True, slots=True)
class Context:
    """A reading of the whole message (joke, media talk, resolved past) that can cancel rules."""

    name: str
    patterns: tuple[Pattern, ...]
    with_: tuple[str, ...]
    without: tuple[str, ...]
    version: str


@dataclass(frozen=True, slots=True)
class Combination:
    """Facets that are weak alone but mean risk together, also across the last user turns."""

    id: str
    level: Level
    tags: frozenset[Tag]
    all_of: tuple[frozenset[str], ...]
    at_least: int
    of: frozenset[str]
    version: str

    def satisfied(self, facets: frozenset[str] | set[str]) -> frozenset[str]:
        """The facets that make it hold (each `all_of` group met by a different facet), or an empty set."""
        if not self.all_of:
            present = self.of & facets
            return frozenset(present) if len(present) >= self.at_least else frozenset()
        candidates = [group & facets for group in self.all_of]
        if not all(candidates) or not _distinct_choice(candidates, 0, set()):
            return frozenset()
        return frozenset().union(*candidates)


def _distinct_choice(groups: list[frozenset[str]], k: int, taken: set[str]) -> bool:
    """Whether groups[k:] can each take a facet not already taken (tiny backtracking search)."""
    if k == len(groups):
        return True
    for facet in groups[k] - taken:
        taken.add(facet)
        if _distinct_choice(groups, k + 1, taken):
            return True
        taken.discard(facet)
    return False


@dataclass(frozen=True, slots=True)
class Negation:
    cues: tuple[Pattern, ...]
    breaks: tuple[Pattern, ...]
    window: int


@dataclass(frozen=True, slots=True)
class Lexicon:
    rules: tuple[Rule, ...]
    idioms: tuple[Idiom, ...]
    contexts: tuple[Context, ...]  # in an order where `with`/`without` refer only to earlier ones
    combinations: tuple[Combination, ...]
    negation: Negation
    versions: Mapping[str, str]  # file name -> version


def load_lexicon(path: Path | Sequence[Path] | None = None) -> Lexicon:
    """Load YAML files: a file, every `*.yaml` of a directory, or several of those together
    (default: the shipped lexicon directory)."""
    paths = [path or DEFAULT_DIR] if path is None or isinstance(path, Path) else list(path)
    files: list[Path] = []
    for item in paths:
        found = sorted(item.glob("*.yaml")) if item.is_dir() else [item]
        if not found:
            raise LexiconError(f"{item}: no lexicon files (*.yaml) found")
        files += found
    docs = [(f, _read(f)) for f in files]
    classes = _classes(docs)
    builder = _Builder(classes)
    for file, doc in docs:
        builder.add(file, doc)
    return builder.finish()


def _read(file: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LexiconError(f"{file}: cannot read lexicon: {exc}") from exc
    if not isinstance(doc, dict):
        raise LexiconError(f"{file}: a lexicon file must be a mapping of sections")
    unknown = set(doc) - _SECTIONS
    if unknown:
        raise LexiconError(f"{file}: unknown section(s) {sorted(unknown)}; allowed: {sorted(_SECTIONS)}")
    version = doc.get("version")
    if not isinstance(version, str | int | float) or not str(version).strip():
        raise LexiconError(f"{file}: missing 'version'")
    return doc


def _classes(docs: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, list[str]]:
    classes: dict[str, list[str]] = {}
    for file, doc in docs:
        for name, terms in (doc.get("classes") or {}).items():
            where = f"{file}: class {name!r}"
            if name in classes:
                raise LexiconError(f"{where}: defined twice")
            if not isinstance(terms, list) or not terms or not all(isinstance(t, str) and t for t in terms):
                raise LexiconError(f"{where}: must be a non-empty list of terms")
            classes[str(name)] = [str(t) for t in terms]
    return classes


class _Builder:
    """Compiles sections file by file, then checks cross-references once everything is known."""

    def __init__(self, classes: Mapping[str, Sequence[str]]) -> None:
        self.classes = classes
        self.rules: list[Rule] = []
        self.rule_places: dict[str, str] = {}
        self.idioms: list[Idiom] = []
        self.contexts: dict[str, tuple[Context, str]] = {}
        self.combinations: list[tuple[Combination, str]] = []
        self.cues: list[Pattern] = []
        self.breaks: list[Pattern] = []
        self.window = 3
        self.versions: dict[str, str] = {}
        self.ids: dict[str, str] = {}

    def add(self, file: Path, doc: dict[str, Any]) -> None:
        version = str(doc["version"])
        self.versions[file.name] = version
        for i, entry in enumerate(_list(doc, "rules", file)):
            rule = self._rule(entry, f"{file}: rules[{i}]", version)
            self.rules.append(rule)
            self.rule_places[rule.id] = f"{file}: rules[{i}] ({rule.id})"
        for i, entry in enumerate(_list(doc, "idioms", file)):
            where = f"{file}: idioms[{i}]"
            entry = _mapping(entry, where, {"id", "patterns", "note"})
            ident = self._id(entry, where)
            self.idioms.append(Idiom(ident, self._patterns(entry, f"{where} ({ident})"), version))
        for name, entry in (doc.get("contexts") or {}).items():
            where = f"{file}: contexts.{name}"
            if name in self.contexts:
                raise LexiconError(f"{where}: defined twice")
            entry = _mapping(entry, where, _CONTEXT_KEYS)
            patterns = self._patterns(entry, where, required=False)
            context = Context(name, patterns, _names(entry, "with", where), _names(entry, "without", where), version)
            if not patterns and not context.with_:
                raise LexiconError(f"{where}: needs 'patterns' or 'with'")
            self.contexts[name] = (context, where)
        for i, entry in enumerate(_list(doc, "combinations", file)):
            where = f"{file}: combinations[{i}]"
            self.combinations.append((self._combination(entry, where, version), where))
        if "negation" in doc:
            where = f"{file}: negation"
            entry = _mapping(doc["negation"], where, {"cues", "breaks", "window", "note"})
            self.cues += self._compile(entry.get("cues") or [], f"{where}.cues")
            self.breaks += self._compile(entry.get("breaks") or [], f"{where}.breaks")
            if "window" in entry:
                if not isinstance(entry["window"], int) or entry["window"] < 1:
                    raise LexiconError(f"{where}.window: must be a positive integer")
                self.window = entry["window"]

    def finish(self) -> Lexicon:
        facets = {f for rule in self.rules for f in rule.facets}
        for combo, where in self.combinations:
            missing = (frozenset().union(*combo.all_of) | combo.of) - facets
            if missing:
                raise LexiconError(f"{where} ({combo.id}): facet(s) {sorted(missing)} are produced by no rule")
        for rule in self.rules:
            missing = rule.unless - set(self.contexts)
            if missing:
                where = self.rule_places[rule.id]
                raise LexiconError(f"{where}: 'unless' names undefined context(s) {sorted(missing)}")
        return Lexicon(
            rules=tuple(self.rules),
            idioms=tuple(self.idioms),
            contexts=self._ordered_contexts(),
            combinations=tuple(c for c, _ in self.combinations),
            negation=Negation(tuple(self.cues), tuple(self.breaks), self.window),
            versions=dict(self.versions),
        )

    def _ordered_contexts(self) -> tuple[Context, ...]:
        ordered: list[Context] = []
        placed: set[str] = set()
        pending = dict(self.contexts)
        while pending:
            ready = [n for n, (c, _) in pending.items() if set(c.with_ + c.without) <= placed]
            if not ready:
                name, (context, where) = next(iter(pending.items()))
                unknown = set(context.with_ + context.without) - set(self.contexts)
                reason = f"refers to undefined context(s) {sorted(unknown)}" if unknown else "is part of a cycle"
                raise LexiconError(f"{where}: {reason}")
            for name in ready:
                ordered.append(pending.pop(name)[0])
                placed.add(name)
        return tuple(ordered)

    def _id(self, entry: Mapping[str, Any], where: str) -> str:
        ident = entry.get("id")
        if not isinstance(ident, str) or not ident:
            raise LexiconError(f"{where}: missing 'id'")
        if ident in self.ids:
            raise LexiconError(f"{where}: id {ident!r} already used at {self.ids[ident]}")
        self.ids[ident] = where
        return ident

    def _rule(self, entry: Any, where: str, version: str) -> Rule:
        entry = _mapping(entry, where, _RULE_KEYS)
        ident = self._id(entry, where)
        where = f"{where} ({ident})"
        negatable = entry.get("negatable", True)
        if not isinstance(negatable, bool):
            raise LexiconError(f"{where}: 'negatable' must be true or false")
        return Rule(
            id=ident,
            level=_level(entry, where),
            tags=_tags(entry, where),
            facets=frozenset(_names(entry, "facets", where)),
            patterns=self._patterns(entry, where),
            negatable=negatable,
            unless=frozenset(_names(entry, "unless", where)),
            version=version,
        )

    def _combination(self, entry: Any, where: str, version: str) -> Combination:
        entry = _mapping(entry, where, _COMBO_KEYS)
        ident = self._id(entry, where)
        where = f"{where} ({ident})"
        groups = entry.get("all_of")
        if groups is not None:
            if not isinstance(groups, list) or not groups or not all(_is_names(g) and g for g in groups):
                raise LexiconError(f"{where}: 'all_of' must be a list of non-empty lists of facet names")
            return Combination(ident, _level(entry, where), _tags(entry, where),
                               tuple(frozenset(g) for g in groups), 0, frozenset(), version)  # fmt: skip
        at_least, of = entry.get("at_least"), entry.get("of")
        if not isinstance(at_least, int) or at_least < 1 or not _is_names(of) or len(of) < at_least:
            raise LexiconError(f"{where}: needs 'all_of', or 'at_least' (a positive integer) with 'of' (facet names)")
        return Combination(ident, _level(entry, where), _tags(entry, where), (), at_least, frozenset(of), version)

    def _patterns(self, entry: Mapping[str, Any], where: str, required: bool = True) -> tuple[Pattern, ...]:
        raw = entry.get("patterns")
        if raw is None and not required:
            return ()
        if not isinstance(raw, list) or not raw:
            raise LexiconError(f"{where}: 'patterns' must be a non-empty list of strings")
        return tuple(self._compile(raw, where))

    def _compile(self, raw: Any, where: str) -> list[Pattern]:
        if not isinstance(raw, list):
            raise LexiconError(f"{where}: must be a list of pattern strings")
        compiled = []
        for i, source in enumerate(raw):
            if not isinstance(source, str):
                raise LexiconError(f"{where}: pattern #{i + 1} is not a string: {source!r}")
            try:
                compiled.append(compile_pattern(source, self.classes))
            except PatternError as exc:
                raise LexiconError(f"{where}: {exc}") from None
        return compiled


def _list(doc: Mapping[str, Any], key: str, file: Path) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise LexiconError(f"{file}: '{key}' must be a list")
    return value


def _mapping(entry: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise LexiconError(f"{where}: must be a mapping, got {type(entry).__name__}")
    unknown = set(entry) - allowed
    if unknown:
        raise LexiconError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return entry


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _names(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key) or []
    if not _is_names(value):
        raise LexiconError(f"{where}: '{key}' must be a list of names")
    return tuple(value)


def _level(entry: Mapping[str, Any], where: str) -> Level:
    try:
        return Level.parse(str(entry.get("level", "")))
    except ValueError as exc:
        raise LexiconError(f"{where}: {exc}") from None


def _tags(entry: Mapping[str, Any], where: str) -> frozenset[Tag]:
    try:
        return frozenset(Tag(t) for t in _names(entry, "tags", where))
    except ValueError as exc:
        raise LexiconError(f"{where}: {exc}; tags are {', '.join(t.value for t in Tag)}") from None
