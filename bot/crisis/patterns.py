"""A small pattern language over folded tokens, so lexicon authors write words, not regexes.

    "@WANT ~2 kill|hurt myself"     "хоч* ~2 помер*|вмер*"     "<num:10-17> yo|years|лет|років"

- words are separated by spaces; each word is a *slot* matching one token;
- `a|b|c` alternatives; a trailing `*` matches by prefix (inflection: помер* = помер, померти, помру…);
- `_` joins words into one multi-word alternative: `no_one|nobody`, `right_now|rn`;
- `@NAME` expands a word class from the lexicon; `<num>` / `<num:10-17>` match numbers;
- a trailing `?` makes the whole slot optional; `~N` lets up to N other tokens stand between slots.

Slots never match across a sentence end. Terms are folded with `normalize.fold_term`, so one
pattern written in Cyrillic or with Polish diacritics also matches transliterations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from bot.crisis.normalize import NUMBER, Token, fold_term

MIN_STEM = 3  # folded prefixes shorter than this would match far too many words
_STEM, _NUMBER_MARK = "*", "<num>"  # how `marks` writes a word start and a number (no folded token has them)
_NUM = re.compile(r"<num(?::(\d+)-(\d+))?>")
_GAP = re.compile(r"~(\d+)")


class PatternError(ValueError):
    """A pattern that cannot be compiled; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class Terms:
    """The set of tokens one word position accepts."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    numbers: tuple[tuple[int, int], ...]

    def accepts(self, token: Token) -> bool:
        if token.form in self.exact:
            return True
        if token.kind == NUMBER:
            value = int(token.form) if len(token.form) < 10 else -1
            return any(lo <= value <= hi for lo, hi in self.numbers)
        return token.form.startswith(self.prefixes)

    def gate(self) -> frozenset[str]:
        """These terms as `marks` writes a message: a token of the message may be accepted exactly when
        the two sets meet (words as they are, stems as `stem*`, any number range as `<num>`)."""
        return self.exact | {p + _STEM for p in self.prefixes} | ({_NUMBER_MARK} if self.numbers else set())


@dataclass(frozen=True, slots=True)
class Slot:
    """One position of a pattern: single words and multi-word phrases (`no_one`), all alternatives."""

    words: Terms
    phrases: tuple[tuple[Terms, ...], ...]
    optional: bool = False
    gap: int = 0  # how many other tokens may stand before this slot

    def ends(self, tokens: Sequence[Token], p: int) -> Iterator[int]:
        """Last token index of every alternative that matches starting at `p` (same sentence)."""
        if self.words.accepts(tokens[p]):
            yield p
        for phrase in self.phrases:
            last = p + len(phrase) - 1
            if last < len(tokens) and tokens[last].sentence == tokens[p].sentence:
                if all(terms.accepts(tokens[p + i]) for i, terms in enumerate(phrase)):
                    yield last


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled pattern: a sequence of slots with gaps."""

    source: str
    slots: tuple[Slot, ...]
    # Per required slot after the first, the `Terms.gate` of every term it starts with: a message in which
    # one of these has no token cannot match, and most candidates fail so (a pattern's first word is common,
    # its last rarely).
    needs: tuple[frozenset[str], ...] = ()

    def could_match(self, message_marks: frozenset[str]) -> bool:
        """False when `finds` would find nothing because a required word has no token in the message
        (`message_marks`: see `marks`). One set intersection per required slot: the rules' reading of a
        message asks this of ~150 candidate patterns."""
        for gate in self.needs:
            if gate.isdisjoint(message_marks):
                return False
        return True

    def anchor_terms(self) -> list[Terms]:
        """Words that must start a match (the first slot); used to index patterns."""
        first = self.slots[0]
        return [first.words, *(phrase[0] for phrase in first.phrases)]

    def finds(self, tokens: Sequence[Token], starts: Iterable[int] | None = None) -> Iterator[Match]:
        """Every match, one per start position (the first way it matches from there).

        `starts` narrows the search to positions where the first word is known to match.
        """
        for start in range(len(tokens)) if starts is None else starts:
            for first_end in self.slots[0].ends(tokens, start):
                skipped = self._match(tokens, 1, first_end + 1, 0, tokens[start].sentence)
                if skipped is not None:
                    end, gaps = skipped
                    yield Match(start, end, gaps)
                    break

    def _match(
        self, tokens: Sequence[Token], k: int, pos: int, carry: int, sentence: int
    ) -> tuple[int, tuple[int, ...]] | None:
        """Match slots[k:] with slot k at `pos` or up to its gap later: (last index, skipped indices)."""
        if k == len(self.slots):
            return pos - 1, ()
        slot = self.slots[k]
        for p in range(pos, min(pos + slot.gap + carry + 1, len(tokens))):
            if tokens[p].sentence != sentence:
                break
            for slot_end in slot.ends(tokens, p):
                rest = self._match(tokens, k + 1, slot_end + 1, 0, sentence)
                if rest is not None:
                    return rest[0], (*range(pos, p), *rest[1])
        if slot.optional:
            return self._match(tokens, k + 1, pos, carry + slot.gap, sentence)
        return None


@dataclass(frozen=True, slots=True)
class Match:
    """Where a pattern matched: first and last token index, and the tokens its gaps skipped."""

    start: int
    end: int
    gaps: tuple[int, ...] = ()


def marks(tokens: Sequence[Token]) -> frozenset[str]:
    """A message's tokens as `Pattern.could_match` compares them: each form, each of its starts of
    MIN_STEM letters or more as `start*`, and `<num>` if it has a number."""
    found = {token.form for token in tokens}
    found.update(form[:n] + _STEM for form in set(found) for n in range(MIN_STEM, len(form) + 1))
    if any(token.kind == NUMBER for token in tokens):
        found.add(_NUMBER_MARK)
    return frozenset(found)


def compile_pattern(source: str, classes: Mapping[str, Sequence[str]]) -> Pattern:
    """Parse one pattern string; raises PatternError naming the faulty part."""
    slots: list[Slot] = []
    gap = 0
    for part in source.split():
        if gap_match := _GAP.fullmatch(part):
            if not slots:
                raise PatternError(f"pattern {source!r} starts with a gap {part!r}")
            gap = int(gap_match.group(1))
            continue
        optional = part.endswith("?") and len(part) > 1
        alternatives = _expand(part[:-1] if optional else part, classes, source, ())
        slots.append(_slot(alternatives, source, optional, gap))
        gap = 0
    if gap:
        raise PatternError(f"pattern {source!r} ends with a gap")
    if not slots or all(s.optional for s in slots):
        raise PatternError(f"pattern {source!r} has no required word")
    if slots[0].optional:
        raise PatternError(f"pattern {source!r} starts with an optional word; start with a required one")
    needs = tuple(_any_start(slot).gate() for slot in slots[1:] if not slot.optional)
    return Pattern(source, tuple(slots), needs)


def _any_start(slot: Slot) -> Terms:
    """The terms a token must match for `slot` to start there: its words, and its phrases' first words."""
    starts = [slot.words, *(phrase[0] for phrase in slot.phrases)]
    return Terms(
        frozenset().union(*(t.exact for t in starts)),
        tuple(sorted({p for t in starts for p in t.prefixes})),
        tuple(n for t in starts for n in t.numbers),
    )


def _expand(part: str, classes: Mapping[str, Sequence[str]], source: str, seen: tuple[str, ...]) -> list[str]:
    """Alternatives of one slot with `@CLASS` references replaced by the class's terms."""
    out: list[str] = []
    for alt in part.split("|"):
        if not alt:
            raise PatternError(f"empty alternative in {part!r} of pattern {source!r}")
        if alt.startswith("@"):
            name = alt[1:]
            if name not in classes:
                raise PatternError(f"unknown word class @{name} in pattern {source!r}")
            if name in seen:
                raise PatternError(f"word class @{name} refers to itself")
            for term in classes[name]:
                out.extend(_expand(term, classes, source, (*seen, name)))
        else:
            out.append(alt)
    return out


def _slot(alternatives: list[str], source: str, optional: bool, gap: int) -> Slot:
    words: list[str] = []
    phrases: list[tuple[Terms, ...]] = []
    for alt in alternatives:
        parts = alt.split("_")
        if len(parts) == 1:
            words.append(alt)
        else:
            phrases.append(tuple(_terms([part], source) for part in parts))
    return Slot(_terms(words, source), tuple(phrases), optional, gap)


def _terms(alternatives: list[str], source: str) -> Terms:
    exact: set[str] = set()
    prefixes: set[str] = set()
    numbers: list[tuple[int, int]] = []
    for alt in alternatives:
        if num := _NUM.fullmatch(alt):
            lo, hi = (int(num.group(1)), int(num.group(2))) if num.group(1) else (0, 10**9)
            numbers.append((lo, hi))
            continue
        stem = alt.endswith("*")
        folded = fold_term(alt[:-1] if stem else alt)
        if len(folded) != 1:
            raise PatternError(
                f"term {alt!r} in pattern {source!r} must be one word (it folds to {folded}); join words with _"
            )
        if stem:
            if len(folded[0]) < MIN_STEM:
                raise PatternError(f"stem {alt!r} in pattern {source!r} is too short (min {MIN_STEM} letters folded)")
            prefixes.add(folded[0])
        else:
            exact.add(folded[0])
    return Terms(frozenset(exact), tuple(sorted(prefixes)), tuple(numbers))


class PatternIndex:
    """Finds, for a token list, only the patterns whose anchor word occurs: keeps assessment fast."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self._exact: dict[str, list[int]] = {}
        self._prefix: dict[str, list[int]] = {}
        self._numeric: list[int] = []
        for i, pattern in enumerate(patterns):
            for terms in pattern.anchor_terms():
                for form in terms.exact:
                    self._exact.setdefault(form, []).append(i)
                for stem in terms.prefixes:
                    self._prefix.setdefault(stem, []).append(i)
                if terms.numbers:
                    self._numeric.append(i)
        self._longest = max((len(s) for s in self._prefix), default=0)

    def candidates(self, tokens: Sequence[Token]) -> dict[int, list[int]]:
        """Pattern number -> token positions where its first word may match."""
        found: dict[int, list[int]] = {}
        for position, token in enumerate(tokens):
            hits: list[int] = list(self._numeric) if token.kind == NUMBER else []
            form = token.form
            hits.extend(self._exact.get(form, ()))
            for length in range(MIN_STEM, min(len(form), self._longest) + 1):
                hits.extend(self._prefix.get(form[:length], ()))
            for i in hits:
                positions = found.setdefault(i, [])
                if not positions or positions[-1] != position:
                    positions.append(position)
        return found
