"""Score the crisis layer on a labelled JSONL file (the format of shared/data/crisis_dev.jsonl).

Each line: {"text": ..., "label": "crisis"|"distress"|"none", "lang": "en"|..., optional
"context": [earlier user turns, oldest first]}. The figures are the ones the goals are stated
in: crisis recall overall and per language, the none -> crisis false-positive rate, distress ->
crisis, precision/recall per label, the confusion matrix and assessment latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bot.crisis.levels import Assessment, CoarseLabel

LABELS: tuple[CoarseLabel, ...] = ("crisis", "distress", "none")


class DatasetError(ValueError):
    """A labelled file that cannot be scored; names the file and line."""


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: CoarseLabel
    lang: str
    context: tuple[str, ...] = ()


def load_examples(path: Path) -> list[Example]:
    """Read a labelled JSONL file; every bad line is reported with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    examples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not JSON: {exc}") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DatasetError(f"{where}: needs a string field 'text'")
        if row.get("label") not in LABELS:
            raise DatasetError(f"{where}: 'label' must be one of {', '.join(LABELS)}")
        context = row.get("context", [])
        if not isinstance(context, list) or not all(isinstance(c, str) for c in context):
            raise DatasetError(f"{where}: 'context' must be a list of strings")
        examples.append(Example(row["text"], row["label"], str(row.get("lang", "?")), tuple(context)))
    if not examples:
        raise DatasetError(f"{path}: no examples")
    return examples


def unique(examples: Iterable[Example]) -> list[Example]:
    """One example per text (the first label wins), so a message in two files does not weigh double."""
    first: dict[str, Example] = {}
    for example in examples:
        first.setdefault(example.text, example)
    return list(first.values())


@dataclass(frozen=True, slots=True)
class Scores:
    """Counts for one slice (all examples, or one language)."""

    n: int
    confusion: dict[str, dict[str, int]]  # gold -> predicted -> count

    def recall(self, label: str) -> float | None:
        gold = sum(self.confusion[label].values())
        return self.confusion[label][label] / gold if gold else None

    def precision(self, label: str) -> float | None:
        predicted = sum(self.confusion[g][label] for g in LABELS)
        return self.confusion[label][label] / predicted if predicted else None

    def rate(self, gold: str, predicted: str) -> float | None:
        """Share of `gold` examples predicted as `predicted` (e.g. none -> crisis)."""
        total = sum(self.confusion[gold].values())
        return self.confusion[gold][predicted] / total if total else None

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "crisis_recall": self.recall("crisis"),
            "none_to_crisis_rate": self.rate("none", "crisis"),
            "distress_to_crisis_rate": self.rate("distress", "crisis"),
            "per_label": {
                label: {
                    "precision": self.precision(label),
                    "recall": self.recall(label),
                    "support": sum(self.confusion[label].values()),
                }
                for label in LABELS
            },  # fmt: skip
            "confusion": self.confusion,
        }


def _scores(pairs: Iterable[tuple[str, str]]) -> Scores:
    confusion = {g: {p: 0 for p in LABELS} for g in LABELS}
    n = 0
    for gold, predicted in pairs:
        confusion[gold][predicted] += 1
        n += 1
    return Scores(n, confusion)


@dataclass(frozen=True, slots=True)
class Report:
    predictions: list[CoarseLabel]
    overall: Scores
    per_language: dict[str, Scores]
    latency_ms: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return {
            **self.overall.to_dict(),
            "per_language": {lang: s.to_dict() for lang, s in self.per_language.items()},
            "latency_ms": self.latency_ms,
            "predictions": self.predictions,
        }


def evaluate(
    assess: Callable[[str, Sequence[str]], Assessment],
    examples: Sequence[Example],
    reset: Callable[[], None] | None = None,
    progress: bool = True,
) -> Report:
    """Assess every example; `reset` (e.g. clearing a cache) runs before each so latency is cold."""
    predictions: list[CoarseLabel] = []
    timings: list[float] = []
    for example in tqdm(examples, desc="crisis eval", unit="msg", disable=not progress, leave=False):
        if reset is not None:
            reset()
        start = time.perf_counter()
        label = assess(example.text, example.context).label
        timings.append((time.perf_counter() - start) * 1000)
        predictions.append(label)
    languages = sorted({e.lang for e in examples})
    pairs = [(e.label, p) for e, p in zip(examples, predictions, strict=True)]
    return Report(
        predictions=predictions,
        overall=_scores(pairs),
        per_language={
            lang: _scores(pair for pair, e in zip(pairs, examples, strict=True) if e.lang == lang) for lang in languages
        },
        latency_ms=_latency(timings),
    )


def _latency(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)

    def percentile(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": percentile(0.50), "p95": percentile(0.95), "max": round(ordered[-1], 3)}


def format_report(report: Report) -> str:
    """A human-readable table of the report."""

    def pct(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:5.3f}"

    lines = ["slice     n   crisis-R  none->crisis  distress->crisis"]
    rows = [("all", report.overall), *report.per_language.items()]
    for name, s in rows:
        lines.append(
            f"{name:<6}{s.n:>5}   {pct(s.recall('crisis'))}     {pct(s.rate('none', 'crisis'))}"
            f"         {pct(s.rate('distress', 'crisis'))}"
        )
    lines += ["", "label      precision  recall  support"]
    for label in LABELS:
        support = sum(report.overall.confusion[label].values())
        lines.append(
            f"{label:<10} {pct(report.overall.precision(label))}     {pct(report.overall.recall(label))}  {support:>7}"
        )
    lines += ["", "confusion (rows gold, columns predicted)", "          " + "".join(f"{p:>10}" for p in LABELS)]
    for gold in LABELS:
        lines.append(f"{gold:<10}" + "".join(f"{report.overall.confusion[gold][p]:>10}" for p in LABELS))
    lat = report.latency_ms
    lines += ["", f"assessment latency ms: p50 {lat['p50']:.3f}  p95 {lat['p95']:.3f}  max {lat['max']:.3f}"]
    return "\n".join(lines)
