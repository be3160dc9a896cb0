"""`supportbot crisis check TEXT` and `supportbot crisis eval FILE.jsonl`: the crisis layer by hand."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.crisis.detector import CrisisDetector
from bot.crisis.evaluation import DatasetError, evaluate, format_report, load_examples
from bot.crisis.helplines import HelplineError
from bot.crisis.lexicon import LexiconError
from bot.crisis.responses import ResponseError, SafeResponder


def register(commands: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add `supportbot crisis check|eval`."""
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
    check.add_argument("--json", action="store_true", help="print the assessment as one JSON object")
    check.set_defaults(func=_check)

    score = actions.add_parser("eval", help="score the crisis layer on a labelled JSONL file")
    score.add_argument("file", type=Path, help="JSONL lines with text, label (crisis|distress|none), lang")
    score.add_argument("--lexicon", type=Path, help="lexicon file or directory (default: the shipped one)")
    score.add_argument("--json", action="store_true", help="also print one JSON object (with predictions) last")
    score.set_defaults(func=_eval)


def _fail(message: str) -> int:
    print(f"supportbot crisis: {message}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    try:
        detector = CrisisDetector.load(args.lexicon)
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
        detector = CrisisDetector.load(args.lexicon)
        examples = load_examples(args.file)
    except (LexiconError, DatasetError) as exc:
        return _fail(str(exc))
    report = evaluate(detector.assess, examples, reset=detector.read.cache_clear)
    print(f"{args.file}: {len(examples)} messages; lexicon {', '.join(detector.lexicon.versions.values())}")
    print(format_report(report))
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    return 0
