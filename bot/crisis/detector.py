"""The rule layer: read a message with the last few user turns and say how urgent it is.

It needs no model, no database and no network, so it keeps working when everything else is
down. A rule fires when one of its patterns matches outside a figure of speech and is not
negated in its clause ("I'm not going to hurt myself"); message-level readings (a joke, media
talk, a resolved past) cancel the rules that name them. Rules also leave *facets* (means,
time soon, farewell...) that are weak alone; combinations of facets, collected from the
current message and the recent turns, raise the level ("pills saved up" two messages ago
+ "tonight" now = emergency). A combination counts only if the current message adds to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

from bot.crisis.learned import Component
from bot.crisis.levels import Assessment, Evidence, Level, Tag
from bot.crisis.lexicon import Lexicon, Rule, load_lexicon
from bot.crisis.normalize import Token, tokenize
from bot.crisis.patterns import Match, Pattern, PatternIndex

log = logging.getLogger(__name__)

CONTEXT_TURNS = 4
_KINDS = ("rule", "idiom", "context", "cue", "break")  # how many previous user turns are read with the current one


@dataclass(frozen=True, slots=True)
class Reading:
    """What the rules found in one message on its own."""

    fired: tuple[Rule, ...]

    @property
    def facets(self) -> frozenset[str]:
        return frozenset().union(*(r.facets for r in self.fired))

    def rules_with(self, facets: frozenset[str]) -> tuple[Rule, ...]:
        return tuple(r for r in self.fired if r.facets & facets)


class CrisisDetector:
    """Assesses user messages; build once with `load()` and share (it is read-only)."""

    def __init__(self, lexicon: Lexicon, components: Sequence[Component] = ()) -> None:
        self.lexicon = lexicon
        self.components = tuple(components)
        # Every pattern of every kind sits in one index, so a message only runs the patterns
        # whose first word it contains.
        owned: list[tuple[str, object, Pattern]] = [("rule", r, p) for r in lexicon.rules for p in r.patterns]
        owned += [("idiom", i, p) for i in lexicon.idioms for p in i.patterns]
        owned += [("context", c.name, p) for c in lexicon.contexts for p in c.patterns]
        owned += [("cue", None, p) for p in lexicon.negation.cues]
        owned += [("break", None, p) for p in lexicon.negation.breaks]
        self._owned = owned
        self._index = PatternIndex([p for _, _, p in owned])
        self.read = lru_cache(maxsize=1024)(self._read)  # recent turns are re-read on every message

    @classmethod
    def load(cls, path: Path | None = None, components: Sequence[Component] = ()) -> CrisisDetector:
        """Load the lexicon (a file or a directory; default the shipped one). Raises LexiconError."""
        return cls(load_lexicon(path), components)

    def assess(self, text: str, recent_user_texts: Sequence[str] = ()) -> Assessment:
        """The assessment of `text`; `recent_user_texts` are earlier user turns, oldest first."""
        current = self.read(text)
        context = [self.read(t) for t in recent_user_texts[-CONTEXT_TURNS:]]
        level = max((r.level for r in current.fired), default=Level.NONE)
        tags: set[Tag] = {t for r in current.fired for t in r.tags}
        evidence = [Evidence("rules", r.id, r.version) for r in current.fired]
        here = current.facets
        everywhere = here.union(*(c.facets for c in context))
        for combo in self.lexicon.combinations:
            used = combo.satisfied(everywhere)
            if not used or not used & here:
                continue
            level = max(level, combo.level)
            tags |= combo.tags
            evidence.append(Evidence("combination", combo.id, combo.version))
            for earlier in context:
                for rule in earlier.rules_with(used - here):
                    tags |= rule.tags
                    evidence.append(Evidence("context", rule.id, rule.version))
        for component in self.components:
            extra = self._ask(component, text, recent_user_texts, level)
            if extra is not None and extra.level > level:
                level = extra.level
                tags |= extra.tags
                evidence.extend(extra.evidence)
        if level < Level.DISTRESS:
            return Assessment(Level.NONE, frozenset(), tuple(evidence))
        return Assessment(level, frozenset(tags), tuple(dict.fromkeys(evidence)))

    @staticmethod
    def _ask(component: Component, text: str, recent: Sequence[str], level: Level) -> Assessment | None:
        """A broken learned component must never cost an assessment: fall back to the rules alone."""
        try:
            return component.assess(text, recent, level)
        except Exception as exc:  # noqa: BLE001 - any failure means "rules only" for this message
            log.warning("crisis component %s failed (%s); using the rules alone", component.name, type(exc).__name__)
            return None

    def _read(self, text: str) -> Reading:
        tokens = tokenize(text)
        if not tokens:
            return Reading(())
        found: dict[str, list[tuple[object, list[Match]]]] = {k: [] for k in _KINDS}
        for i, starts in sorted(self._index.candidates(tokens).items()):
            kind, owner, pattern = self._owned[i]
            spans = list(pattern.finds(tokens, starts))
            if spans:
                found[kind].append((owner, spans))
        contexts = self._contexts({str(name) for name, _ in found["context"]})
        idiom_spans = [(m.start, m.end) for _, matches in found["idiom"] for m in matches]
        cue_ends = {m.end for _, matches in found["cue"] for m in matches}
        breaks = {i for _, matches in found["break"] for m in matches for i in range(m.start, m.end + 1)}
        fired: dict[str, Rule] = {}
        for owner, spans in found["rule"]:
            rule = cast(Rule, owner)
            if rule.id in fired or rule.unless & contexts:
                continue
            for match in spans:
                if any(a <= match.end and match.start <= b for a, b in idiom_spans):
                    continue
                if rule.negatable and self._negated(tokens, match, cue_ends, breaks):
                    continue
                fired[rule.id] = rule
                break
        return Reading(tuple(fired.values()))

    def _contexts(self, matched: set[str]) -> set[str]:
        """Resolve `with`/`without` in dependency order over the contexts whose patterns matched."""
        active: set[str] = set()
        for ctx in self.lexicon.contexts:
            found = not ctx.patterns or ctx.name in matched
            if found and all(w in active for w in ctx.with_) and not any(w in active for w in ctx.without):
                active.add(ctx.name)
        return active

    def _negated(self, tokens: list[Token], match: Match, cue_ends: set[int], breaks: set[int]) -> bool:
        """A negation cue in a gap of the match ("I'm not suicidal") or shortly before it, in the
        same clause with no clause-opening word between ("not going to hurt myself")."""
        if any(i in cue_ends for i in match.gaps):
            return True
        start = match.start
        clause = tokens[start].clause
        for j in range(start - 1, max(-1, start - 1 - self.lexicon.negation.window), -1):
            if tokens[j].clause != clause or j in breaks:
                return False
            if j in cue_ends:
                return True
        return False
