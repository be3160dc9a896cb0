"""Matching a lexicon against one text: which rules fire, outside idioms, un-negated, in context.

Shared by the crisis detector (user messages) and the output filter (the model's replies), so
both read negation ("I'm not a doctor"), idioms and message-level contexts the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from bot.crisis.lexicon import Lexicon, Rule
from bot.crisis.normalize import Token, tokenize
from bot.crisis.patterns import Match, Pattern, PatternIndex, marks

_KINDS = ("rule", "idiom", "context", "cue", "break")


@dataclass(frozen=True, slots=True)
class Reading:
    """What the rules found in one text on its own."""

    fired: tuple[Rule, ...]

    @property
    def facets(self) -> frozenset[str]:
        return frozenset().union(*(r.facets for r in self.fired))

    def rules_with(self, facets: frozenset[str]) -> tuple[Rule, ...]:
        return tuple(r for r in self.fired if r.facets & facets)


class RuleEngine:
    """Compiled lexicon plus one index over all its patterns; `read` is cached and thread-safe."""

    def __init__(self, lexicon: Lexicon, cache_size: int = 16384) -> None:
        self.lexicon = lexicon
        # Every pattern of every kind sits in one index, so a text only runs the patterns
        # whose first word it contains.
        owned: list[tuple[str, object, Pattern]] = [("rule", r, p) for r in lexicon.rules for p in r.patterns]
        owned += [("idiom", i, p) for i in lexicon.idioms for p in i.patterns]
        owned += [("context", c.name, p) for c in lexicon.contexts for p in c.patterns]
        owned += [("cue", None, p) for p in lexicon.negation.cues]
        owned += [("break", None, p) for p in lexicon.negation.breaks]
        self._owned = owned
        self._index = PatternIndex([p for _, _, p in owned])
        # Every message re-reads its user's last few turns: the cache must hold ~4 texts per active chat
        # (1024 thrashed at a few hundred chats, and re-reading was a sixth of a loaded process's CPU).
        self.read = lru_cache(maxsize=cache_size)(self._read)

    def _read(self, text: str) -> Reading:
        """The rules that fire in `text` (use the cached `read`)."""
        tokens = tokenize(text)
        if not tokens:
            return Reading(())
        found: dict[str, list[tuple[object, list[Match]]]] = {k: [] for k in _KINDS}
        message_marks = marks(tokens)
        for i, starts in sorted(self._index.candidates(tokens).items()):
            kind, owner, pattern = self._owned[i]
            if not pattern.could_match(message_marks):
                continue
            spans = list(pattern.finds(tokens, starts))
            if spans:
                found[kind].append((owner, spans))
        contexts = self._contexts({str(name) for name, _ in found["context"]})
        cue_ends = {m.end for _, matches in found["cue"] for m in matches}
        # A figure of speech with a negation inside is no longer that figure: "a rope, not for the tent".
        idiom_spans = [
            (m.start, m.end) for _, matches in found["idiom"] for m in matches if not any(i in cue_ends for i in m.gaps)
        ]
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
        if start in breaks:  # the match opens its own clause ("... when I'm gone")
            return False
        clause = tokens[start].clause
        for j in range(start - 1, max(-1, start - 1 - self.lexicon.negation.window), -1):
            if tokens[j].clause != clause or j in breaks:
                return False
            if j in cue_ends:
                return True
        return False
