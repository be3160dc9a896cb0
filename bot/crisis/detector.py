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

from collections.abc import Sequence
from pathlib import Path

from bot.crisis.engine import RuleEngine
from bot.crisis.learned import Component, ask
from bot.crisis.levels import Assessment, Evidence, Level, Tag
from bot.crisis.lexicon import Lexicon, load_lexicon

CONTEXT_TURNS = 4  # how many previous user turns are read with the current one


class CrisisDetector:
    """Assesses user messages; build once with `load()` and share (it is read-only)."""

    def __init__(self, lexicon: Lexicon, components: Sequence[Component] = ()) -> None:
        self.lexicon = lexicon
        self.components = tuple(components)
        self.engine = RuleEngine(lexicon)
        self.read = self.engine.read

    @classmethod
    def load(cls, path: Path | None = None, components: Sequence[Component] = ()) -> CrisisDetector:
        """Load the lexicon (a file or a directory; default the shipped one). Raises LexiconError."""
        return cls(load_lexicon(path), components)

    def assess(
        self, text: str, recent_user_texts: Sequence[str] = (), components: Sequence[Component] | None = None
    ) -> Assessment:
        """The assessment of `text`; `recent_user_texts` are earlier user turns, oldest first;
        `components` are the learned ones to ask (default: all of this detector's).

        Evidence lists the rules that set a level, each combination that held, the weak rules
        that fed it, and (component "context") the earlier turns' rules it drew on.
        """
        current = self.read(text)
        context = [self.read(t) for t in recent_user_texts[-CONTEXT_TURNS:]]
        level = max((r.level for r in current.fired), default=Level.NONE)
        tags: set[Tag] = {t for r in current.fired for t in r.tags}
        evidence = [Evidence("rules", r.id, r.version) for r in current.fired if r.level > Level.NONE]
        here = current.facets
        everywhere = here.union(*(c.facets for c in context))
        for combo in self.lexicon.combinations:
            used = combo.satisfied(everywhere)
            if not used or not used & here:
                continue
            level = max(level, combo.level)
            tags |= combo.tags
            evidence.append(Evidence("combination", combo.id, combo.version))
            evidence += [Evidence("rules", r.id, r.version) for r in current.rules_with(used & here)]
            for earlier in context:
                for rule in earlier.rules_with(used - here):
                    tags |= rule.tags
                    evidence.append(Evidence("context", rule.id, rule.version))
        for component in self.components if components is None else components:
            extra = ask(component, text, recent_user_texts, level)
            if extra is not None and extra.level > level:
                level = extra.level
                tags |= extra.tags
                evidence.extend(extra.evidence)
        if level < Level.DISTRESS:
            return Assessment(Level.NONE)
        return Assessment(level, frozenset(tags), tuple(dict.fromkeys(evidence)))
