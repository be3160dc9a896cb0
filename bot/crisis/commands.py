"""`supportbot crisis check|eval|train`: the crisis layer by hand, scored, and its optional classifier."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from bot.crisis import classifier, embedding
from bot.crisis.components import load_components
from bot.crisis.detector import CrisisDetector
from bot.crisis.evaluation import DatasetError, Example, evaluate, format_report, load_examples, unique
from bot.crisis.helplines import HelplineError
from bot.crisis.learned import data_version, positives
from bot.crisis.lexicon import LexiconError
from bot.crisis.responses import ResponseError, SafeResponder
from bot.crisis.threshold import Choice, FitPredict, out_of_fold, pick, sweep

_CLASSIFIER_HELP = "learned component (from `crisis train`); default the shipped models, '' for the rules alone"


def register(commands: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add `supportbot crisis check|eval|train`."""
    crisis = commands.add_parser("crisis", help="the crisis layer: assess one text, score a labelled file")
    actions = crisis.add_subparsers(dest="crisis_action", required=True, metavar="ACTION")

    check = actions.add_parser("check", help="print the assessment of one message")
    check.add_argument("text", help="the user message")
    check.add_argument("--context", action="append", default=[], metavar="TEXT",
                       help="an earlier user turn, oldest first (repeat for several)")  # fmt: skip
    check.add_argument("--reply", action="store_true", help="also print the safe reply the user would get")
    check.add_argument("--locale", help="user locale for --reply, e.g. uk-UA")
    check.add_argument("--country", help="user country for --reply, e.g. PL")
    check.add_argument("--phone", help="user phone number (E.164) for --reply")
    check.add_argument("--lexicon", type=Path, help="lexicon file or directory (default: the shipped one)")
    check.add_argument("--classifier", help=_CLASSIFIER_HELP)
    check.add_argument("--json", action="store_true", help="print the assessment as one JSON object")
    check.set_defaults(func=_check)

    score = actions.add_parser("eval", help="score the crisis layer on a labelled JSONL file")
    score.add_argument("file", type=Path, help="JSONL lines with text, label (crisis|distress|none), lang")
    score.add_argument("--lexicon", type=Path, help="lexicon file or directory (default: the shipped one)")
    score.add_argument("--classifier", help=_CLASSIFIER_HELP)
    score.add_argument("--json", action="store_true", help="also print one JSON object (with predictions) last")
    score.set_defaults(func=_eval)

    fit = actions.add_parser("train", help="train a learned component on labelled JSONL files")
    fit.add_argument("files", type=Path, nargs="+", help="labelled JSONL files (same format as eval)")
    fit.add_argument("--kind", choices=["ngram", "embedding"], default="ngram",
                     help="character n-gram model, or a network over multilingual sentence embeddings")  # fmt: skip
    fit.add_argument("--out", type=Path, required=True, help="where to write the model (.npz)")
    fit.add_argument("--threshold", type=float,
                     help="probability needed to raise to concern (default: chosen by cross-validation)")  # fmt: skip
    fit.add_argument("--held-out", type=Path, nargs="+", default=[], metavar="FILE",
                     help="choose the threshold on these files, with a model trained on the others, instead of "
                          "by cross-validation; they join the training data of the final model")  # fmt: skip
    fit.add_argument("--folds", type=int, default=5, help="cross-validation folds for choosing the threshold")
    fit.add_argument("--max-none-rate", type=float, default=0.02,
                     help="none -> crisis budget of rules + classifier on held-out data")  # fmt: skip
    fit.add_argument("--max-distress-rate", type=float, default=1.0,
                     help="distress -> crisis budget on held-out data (default 1: no budget)")  # fmt: skip
    fit.add_argument("--epochs", type=int, help="training epochs (default 12 for ngram, 60 for embedding)")
    fit.add_argument("--members", type=int, default=5,
                     help="embedding only: heads trained from different seeds and averaged (default 5)")  # fmt: skip
    fit.set_defaults(func=_train)


def _fail(message: str) -> int:
    print(f"supportbot crisis: {message}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    try:
        detector = CrisisDetector.load(args.lexicon, load_components(args.classifier))
        responder = SafeResponder.load() if args.reply else None
    except (LexiconError, ResponseError, HelplineError) as exc:
        return _fail(str(exc))
    assessment = detector.assess(args.text, args.context)
    if args.json:
        print(json.dumps(assessment.to_dict(), ensure_ascii=False))
    else:
        tags = ", ".join(sorted(str(t) for t in assessment.tags)) or "-"
        print(f"level: {assessment.level.name.lower()} (label {assessment.label})")
        print(f"tags: {tags}")
        for e in assessment.evidence:
            print(f"  {e.component}: {e.rule_id} @ {e.version}")
    if responder is not None:
        message = responder.reply(assessment, locale=args.locale, country=args.country, phone=args.phone)
        print(f"\nsafe reply ({message.language}, resources {message.resources.country}):\n{message.text}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    try:
        detector = CrisisDetector.load(args.lexicon, load_components(args.classifier))
        examples = load_examples(args.file)
    except (LexiconError, DatasetError) as exc:
        return _fail(str(exc))
    report = evaluate(detector.assess, examples, reset=detector.read.cache_clear)
    learned = ", ".join(f"{c.name} {c.version} @ {c.threshold:.2f}" for c in detector.components) or "off"
    print(f"{args.file}: {len(examples)} messages; lexicon {', '.join(detector.lexicon.versions.values())}; "
          f"classifier {learned}")  # fmt: skip
    print(format_report(report))
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        return _fail("--threshold must be between 0 and 1")
    args.epochs = args.epochs or (12 if args.kind == "ngram" else 60)
    budgets_ok = 0.0 <= args.max_none_rate < 1.0 and 0.0 <= args.max_distress_rate <= 1.0
    if args.epochs < 1 or args.folds < 2 or args.members < 1 or not budgets_ok:
        return _fail("--epochs and --members must be at least 1, --folds at least 2, the rate budgets in [0, 1]")
    try:
        trained = unique(e for path in args.files for e in load_examples(path))
        seen = {e.text for e in trained}
        held_out = [e for e in unique(e for path in args.held_out for e in load_examples(path)) if e.text not in seen]
    except DatasetError as exc:
        return _fail(str(exc))
    examples = trained + held_out
    try:
        if args.kind == "ngram":
            fit_predict, build = _ngram(examples, args.epochs)
        else:
            fit_predict, build = _embedding(examples, args.epochs, args.members)
    except ImportError as exc:
        return _fail(f"the embedding engine is not installed ({exc})")
    threshold = args.threshold
    if threshold is None:
        if held_out:
            scored = np.arange(len(trained), len(examples))
            probs, how = fit_predict(np.arange(len(trained)), scored), f"on {len(held_out)} held-out messages"
        else:
            scored = np.arange(len(examples))
            probs, how = out_of_fold(len(examples), args.folds, fit_predict), f"cross-validated ({args.folds} folds)"
        rules, judged = CrisisDetector.load(), [examples[i] for i in scored]
        table = sweep(judged, probs, [rules.assess(e.text, e.context).label == "crisis" for e in judged])
        print(f"{how}, rules + {args.kind} model:")
        try:
            choice = pick(table, args.max_none_rate, args.max_distress_rate)
        except ValueError as exc:
            _print_sweep(table, None)  # the table shows how far the budgets are from reach
            return _fail(str(exc))
        _print_sweep(table, choice)
        threshold = choice.threshold
    model = build(threshold, tuple(p.name for p in [*args.files, *args.held_out]))
    model.save(args.out)
    crisis = sum(e.label == "crisis" for e in examples)
    print(f"trained on {len(examples)} messages ({crisis} crisis); model {model.version} "
          f"threshold {threshold:.2f} -> {args.out}")  # fmt: skip
    return 0


def _print_sweep(table: Sequence[Choice], choice: Choice | None) -> None:
    print("  threshold  crisis-R  none->crisis  distress->crisis")
    for c in (c for c in table if round(c.threshold * 100) % 5 == 0 or c is choice):
        row = f"{c.threshold:.2f}  {c.crisis_recall:.3f}  {c.none_to_crisis:.3f}  {c.distress_to_crisis:.3f}"
        print(f"  {row}{'  <- chosen' if c is choice else ''}")


class _Model(Protocol):
    version: str

    def save(self, path: Path) -> None: ...


# Per kind: how to cross-validate it, and how to build the final model (threshold, sources) on every example.
Trainer = tuple[FitPredict, Callable[[float, tuple[str, ...]], _Model]]


def _ngram(examples: list[Example], epochs: int) -> Trainer:
    texts, labels = [e.text for e in examples], positives(e.label for e in examples)

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        model = classifier.train([texts[i] for i in train_idx], [labels[i] for i in train_idx], epochs=epochs,
                                 progress=False)  # fmt: skip
        return np.array([model.probability(texts[i]) for i in test_idx])

    def build(threshold: float, sources: tuple[str, ...]) -> classifier.NgramClassifier:
        return classifier.train(texts, labels, epochs=epochs, threshold=threshold, sources=sources)

    return fit_predict, build


def _embedding(examples: list[Example], epochs: int, members: int) -> Trainer:
    texts, labels = [e.text for e in examples], positives(e.label for e in examples)
    vectors = embedding.Embedder().embed(texts, progress=True)  # once: the folds only retrain the head
    y = np.asarray(labels)

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        head = embedding.fit_head(vectors[train_idx], y[train_idx], epochs=epochs, members=members)
        return head.probability(vectors[test_idx])

    def build(threshold: float, sources: tuple[str, ...]) -> embedding.EmbeddingClassifier:
        head = embedding.fit_head(vectors, y, epochs=epochs, members=members)
        return embedding.EmbeddingClassifier(head, threshold, data_version("e5mlp", texts, labels), sources)

    return fit_predict, build
