"""An optional learned component: a hashed character n-gram logistic regression over folded text.

Rules miss phrasings nobody wrote a pattern for; a small linear model over character n-grams
of the *folded* text (the same skeleton the rules see, so Cyrillic, transliteration and
missing diacritics look alike) recalls some of them in all four languages, runs in well under
a millisecond and needs no download. It only ever raises a message to `concern` (a person
then asks directly about safety) and never lowers the rules' verdict. A model trained on every
shipped labelled file shipped as `data/classifier.npz` is on by default; a broken file means
"rules only", with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bot.crisis.learned import data_version
from bot.crisis.levels import Assessment, Evidence, Level, Tag
from bot.crisis.normalize import tokenize

DIMENSIONS = 1 << 18
SHIPPED = Path(__file__).with_name("data") / "classifier.npz"
_FORMAT = 3  # 3: features counted once per message
# The model is trained on messages of a few dozen words and its score grows with the square root of
# the length, so a long message is read in overlapping windows of this many words, the riskiest counts.
WINDOW_WORDS, WINDOW_STEP = 48, 24


def features(text: str) -> np.ndarray:
    """Hashed indices of folded word unigrams, bigrams and character 3-5-grams, each once.

    Presence, not count: with counts, a harmless word repeated through a long message (a diary of
    days that all end with "dinner") added up to an alarm."""
    return _hashed([t.form for t in tokenize(text)])


def _hashed(words: Sequence[str]) -> np.ndarray:
    indices = [i for w in words for i in _word_features(w)]
    indices += [_index(f"b:{a}_{b}") for a, b in zip(words, words[1:], strict=False)]
    return np.unique(np.fromiter(indices, dtype=np.int64, count=len(indices)))


@functools.lru_cache(maxsize=65536)
def _word_features(word: str) -> tuple[int, ...]:
    """A word's unigram and character 3-5-gram indices: the same every time, and words recur."""
    padded = f"<{word}>"
    grams = [f"w:{word}"] + [f"c:{padded[i : i + n]}" for n in (3, 4, 5) for i in range(len(padded) - n + 1)]
    return tuple(_index(g) for g in grams)


def _index(gram: str) -> int:
    return int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=4).digest(), "little") % DIMENSIONS


@dataclass
class NgramClassifier:
    """Weights over hashed features; `assess` follows the `learned.Component` protocol."""

    weights: np.ndarray
    bias: float
    threshold: float
    version: str  # "ngram-" + digest of the training data (see `data_version`)
    sources: tuple[str, ...] = ()  # names of the files it was trained on
    name: str = "ngram-lr"
    slow: bool = False

    def __post_init__(self) -> None:
        # Under load the layer asks twice per message (the verdict, then the rank of its second look).
        self._remembered = functools.lru_cache(maxsize=256)(self._text_probability)

    def probability(self, text: str) -> float:
        """The model's probability that `text` reads as crisis (recent texts are remembered)."""
        return self._remembered(text)

    def _text_probability(self, text: str) -> float:
        words = [t.form for t in tokenize(text)]
        starts = range(0, max(len(words) - WINDOW_WORDS, 0) + WINDOW_STEP, WINDOW_STEP)
        return max(self._probability(_hashed(words[i : i + WINDOW_WORDS])) for i in starts)

    def _probability(self, idx: np.ndarray) -> float:
        if idx.size == 0:
            return 0.0
        score = float(self.weights[idx].sum()) / math.sqrt(idx.size) + self.bias
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, score))))

    def assess(self, text: str, recent_user_texts: Sequence[str], rule_level: Level) -> Assessment | None:
        if rule_level >= Level.CONCERN or self.probability(text) < self.threshold:
            return None
        return Assessment(Level.CONCERN, frozenset({Tag.SELF}), (Evidence("classifier", self.name, self.version),))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:  # np.savez would append ".npz" to a path without it
            np.savez_compressed(fh, weights=self.weights.astype(np.float32), bias=self.bias, threshold=self.threshold,
                                version=self.version, sources="\n".join(self.sources), kind="ngram",
                                format=_FORMAT)  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> NgramClassifier:
        """Read a model file; raises ValueError naming the file when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != _FORMAT or data["weights"].shape != (DIMENSIONS,):
                    raise ValueError("unexpected format or shape")
                threshold = float(data["threshold"])
                if not 0.0 < threshold < 1.0 or not np.isfinite(data["weights"]).all():
                    raise ValueError("threshold or weights out of range")
                sources = tuple(s for s in str(data["sources"]).split("\n") if s)
                return cls(data["weights"].astype(np.float32), float(data["bias"]), threshold, str(data["version"]),
                           sources)  # fmt: skip
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a crisis classifier model ({exc})") from exc


def train(
    texts: Sequence[str],
    labels: Sequence[bool],
    epochs: int = 12,
    learning_rate: float = 0.5,
    l2: float = 1e-5,
    threshold: float = 0.8,
    seed: int = 0,
    progress: bool = True,
    sources: Sequence[str] = (),
) -> NgramClassifier:
    """Fit by plain SGD on the logistic loss (length-normalised sparse features); deterministic for a seed.

    Both classes weigh the same in the loss, so the probability does not lean towards whichever
    label the shipped data happens to hold more of.
    """
    rows = [features(t) for t in texts]
    y = np.asarray(labels, dtype=np.float64)
    share = min(max(float(y.mean()), 1e-3), 1 - 1e-3)
    class_weight = np.where(y > 0, 0.5 / share, 0.5 / (1 - share))
    weights = np.zeros(DIMENSIONS, dtype=np.float64)
    bias = 0.0
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(epochs), desc="train crisis classifier", unit="epoch", disable=not progress):
        for i in rng.permutation(len(rows)):
            idx = rows[i]
            if idx.size == 0:
                continue
            scale = 1.0 / math.sqrt(idx.size)
            score = weights[idx].sum() * scale + bias
            error = (1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, score)))) - y[i]) * class_weight[i]
            np.add.at(weights, idx, -learning_rate * (error * scale + l2 * weights[idx]))
            bias -= learning_rate * error * 0.1
    return NgramClassifier(weights.astype(np.float32), float(bias), threshold, data_version("ngram", texts, labels),
                           tuple(sources))  # fmt: skip
