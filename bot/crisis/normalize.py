"""One spelling for many: fold Cyrillic, Latin transliteration, missing diacritics and emoji together.

People write "хочу померти", "khochu pomerty", "hochu pomerty" and "xочу" (a Latin x among
Cyrillic letters); Polish without diacritics ("chce umrzec"); "I'm" and "im". Every word is
mapped to a lossy phonetic *skeleton* so that all of these become the same token. Lexicon
patterns are written in normal spelling and pass through the same function when they are
compiled, so a pattern written once in Cyrillic matches its transliterations too.

The skeleton is deliberately coarse (h/g/kh/x merge, y/j/i merge, doubled letters collapse);
a few unrelated words collide, which the lexicon tests guard against.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_CYRILLIC = {
    "а": "a", "б": "b", "в": "v", "г": "g", "ґ": "g", "д": "d", "е": "e", "є": "ie", "ё": "e",
    "ж": "zh", "з": "z", "и": "y", "і": "i", "ї": "i", "й": "i", "к": "k", "л": "l", "м": "m",
    "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ў": "u", "ф": "f",
    "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e",
    "ю": "iu", "я": "ia",
}  # fmt: skip
_LATIN_EXTRA = {"ł": "l", "ß": "ss", "æ": "ae", "ø": "o", "đ": "d", "œ": "oe"}
_CHAR_MAP = str.maketrans({**_CYRILLIC, **_LATIN_EXTRA})
# Digraphs of the common transliteration schemes and of Polish, folded to one letter.
_DIGRAPHS = re.compile(r"sh|ch|sz|cz|zh|kh")
_DIGRAPH_MAP = {"sh": "s", "ch": "c", "sz": "s", "cz": "c", "zh": "z", "kh": "h"}
# Letters whose use differs between schemes: Ukrainian г is h, Russian г is g; й/j/y; в/w.
_LETTER_MAP = str.maketrans({"h": "g", "x": "g", "y": "i", "j": "i", "w": "v", "q": "k"})
_REPEATS = re.compile(r"(.)\1+")
# Apostrophes (Ukrainian п'ять / пʼять, English I'm) and soft-sign substitutes vanish inside words.
_APOSTROPHES = re.compile(r"['’ʼ‘`´ʹ′]")
_IGNORED = {"\u200d", "\ufe0f", "\ufe0e", "\u20e3"}  # zero-width joiner, variation selectors, keycap
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_TOKEN = re.compile(r"[^\W\d_]+|\d+|\.{2,}|…+|[.!?\n]+|[,;:()\-–—/\"«»„“”]+|\S", re.UNICODE)

WORD, NUMBER, EMOJI = "w", "n", "e"


@lru_cache(maxsize=65536)
def skeleton(word: str) -> str:
    """The folded form of one lower-case word (letters only)."""
    decomposed = unicodedata.normalize("NFKD", word)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    latin = _DIGRAPHS.sub(lambda m: _DIGRAPH_MAP[m.group()], stripped.translate(_CHAR_MAP))
    return _REPEATS.sub(r"\1", latin.translate(_LETTER_MAP))


def emoji_token(char: str) -> str:
    """A stable word-like token for one pictograph, e.g. 💊 -> "emo1f48a"."""
    return f"emo{ord(char):x}"


def _is_pictograph(char: str) -> bool:
    return unicodedata.category(char) == "So" or 0x1F000 <= ord(char) <= 0x1FAFF


@dataclass(frozen=True, slots=True)
class Token:
    """A folded word, number or emoji with the sentence and clause it sits in."""

    form: str
    kind: str  # WORD, NUMBER or EMOJI
    sentence: int
    clause: int


def tokenize(text: str) -> list[Token]:
    """Split a message into folded tokens; punctuation only advances sentence and clause counters."""
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).casefold())
    tokens: list[Token] = []
    sentence = clause = 0
    for match in _TOKEN.finditer(text):
        piece = match.group()
        first = piece[0]
        if first.isalpha():
            form = skeleton(piece)
            if form:
                tokens.append(Token(form, WORD, sentence, clause))
        elif first.isdigit():
            tokens.append(Token(str(int(piece)) if len(piece) < 10 else piece, NUMBER, sentence, clause))
        elif first in ".!?\n" and not piece.startswith(".."):
            sentence += 1
            clause += 1
        elif first in '.…,;:()-–—/"«»„“”':  # an ellipsis trails off but seldom ends the thought
            clause += 1
        elif first in _IGNORED or ord(first) in _SKIN_TONES:
            continue
        elif _is_pictograph(first):
            tokens.append(Token(emoji_token(first), EMOJI, sentence, clause))
    return tokens


def fold_term(term: str) -> list[str]:
    """Fold a lexicon term written in normal spelling ("п'ять", "💊", "don't") into token forms."""
    return [t.form for t in tokenize(term)]
