"""Regression on labelled sets: the development set (a copy of shared/data/crisis_dev.jsonl) and
our own larger set of varied phrases (tests/data/crisis_phrases.jsonl), held to the issue's goals.

Latency is not asserted here (timing belongs to `supportbot crisis eval`, which prints it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.crisis.detector import CrisisDetector
from bot.crisis.evaluation import Report, evaluate, load_examples
from bot.crisis.layer import CrisisLayer

DATA = Path(__file__).with_name("data")
TUNED = {"crisis_dev.jsonl", "crisis_phrases.jsonl"}
# unseen_a/b/c/d: written by others, scored before tuning, then tuned on (c, d by phenomenon in all four languages)
UNSEEN = ["crisis_unseen_a.jsonl", "crisis_unseen_b.jsonl", "crisis_unseen_c.jsonl", "crisis_unseen_d.jsonl"]
SETS = [*sorted(TUNED), *UNSEEN]


@pytest.fixture(scope="module")
def detector() -> CrisisDetector:
    return CrisisDetector.load()


@pytest.fixture(scope="module", params=SETS)
def report(request: pytest.FixtureRequest, detector: CrisisDetector) -> Report:
    return evaluate(detector.assess, load_examples(DATA / request.param), progress=False)


def test_crisis_recall_overall_and_per_language(report: Report) -> None:
    assert report.overall.recall("crisis") >= 0.95
    assert set(report.per_language) == {"en", "uk", "ru", "pl"}
    for lang, scores in report.per_language.items():
        assert scores.recall("crisis") >= 0.90, lang


def test_none_to_crisis_false_positive_rate(report: Report) -> None:
    assert report.overall.rate("none", "crisis") <= 0.05


def test_distress_is_mostly_not_escalated(report: Report, request: pytest.FixtureRequest) -> None:
    assert report.overall.rate("distress", "crisis") <= 0.10
    # Distress recall is no goal (distress -> none costs no escalation); held to it where the rules were tuned.
    if request.node.callspec.params["report"] in TUNED:
        assert report.overall.recall("distress") >= 0.75


@pytest.fixture(scope="module")
def shipped_layer() -> CrisisDetector:
    """Rules plus both shipped learned components: what the service runs."""
    return CrisisLayer.load().detector


def test_the_shipped_layer_keeps_the_goals_on_the_development_set(shipped_layer: CrisisDetector) -> None:
    report = evaluate(shipped_layer.assess, load_examples(DATA / "crisis_dev.jsonl"), progress=False)
    assert report.overall.recall("crisis") >= 0.95 and report.overall.rate("none", "crisis") <= 0.05
    assert report.overall.rate("distress", "crisis") <= 0.10


def test_the_shipped_layer_does_not_escalate_people_just_talking_to_the_bot(shipped_layer: CrisisDetector) -> None:
    """'do you remember me', 'I am back', 'tell me a joke': the embedding backstop once escalated such lines."""
    report = evaluate(shipped_layer.assess, load_examples(DATA / "crisis_chitchat.jsonl"), progress=False)
    assert report.overall.rate("none", "crisis") <= 0.02 and report.overall.rate("distress", "crisis") <= 0.05
