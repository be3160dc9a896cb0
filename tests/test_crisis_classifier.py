"""The optional learned component: trains offline, only raises to concern, fails closed."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bot.crisis.classifier import SHIPPED, NgramClassifier, train
from bot.crisis.components import load_components
from bot.crisis.detector import CrisisDetector
from bot.crisis.evaluation import load_examples, unique
from bot.crisis.layer import CrisisLayer
from bot.crisis.learned import data_version, positives
from bot.crisis.levels import Level
from bot.crisis.threshold import Choice, pick
from tests.test_crisis_commands import run

DATA = Path(__file__).with_name("data")

RISK = [
    "everything feels pointless and I keep thinking the world is better without me in it",
    "I keep thinking everyone is better off without me around",
    "все без мене буде краще, я тільки заважаю",
    "всем без меня будет лучше, я только мешаю",
    "wszystkim beze mnie będzie lepiej, tylko przeszkadzam",
    "nobody would notice if I just faded away for good",
] * 3
SAFE = ["I love my new job", "the weather is nice today", "дякую за допомогу", "спасибо за помощь",
        "dziękuję za pomoc", "how do I renew my visa", "my cat is sleeping on the sofa"] * 3  # fmt: skip


@pytest.fixture(scope="module")
def model() -> NgramClassifier:
    return train(RISK + SAFE, [True] * len(RISK) + [False] * len(SAFE), epochs=8, threshold=0.7, progress=False)


def test_it_learns_folded_ngrams_across_scripts(model: NgramClassifier) -> None:
    assert model.probability("vsim bez mene bude krashche") > model.probability("dyakuyu za dopomohu")
    assert model.probability("the world is better without me in it, honestly") >= 0.7
    assert model.probability("my cat is sleeping") < 0.5


def test_it_only_raises_to_concern_and_never_lowers(model: NgramClassifier) -> None:
    text = "everything feels pointless, I keep thinking nobody needs me around"
    assert CrisisDetector.load().assess(text).level == Level.DISTRESS  # the rules alone
    detector = CrisisDetector.load(components=[model])
    raised = detector.assess(text)
    assert raised.level == Level.CONCERN
    assert raised.evidence[-1].component == "classifier" and raised.evidence[-1].version == model.version
    assert detector.assess("I took 30 pills an hour ago").level == Level.EMERGENCY
    assert model.assess("the world is better without me", (), Level.CRISIS) is None


def test_save_and_load_round_trip(model: NgramClassifier, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = NgramClassifier.load(path)
    assert loaded.version == model.version and loaded.threshold == model.threshold
    text = "everything is pointless without me"
    assert loaded.probability(text) == pytest.approx(model.probability(text), abs=1e-5)


def test_a_broken_model_file_means_rules_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "model.npz"
    broken.write_bytes(b"not a model")
    with caplog.at_level(logging.WARNING):
        assert load_components(broken) == []
    assert "crisis classifier disabled, using the rules without it" in caplog.text
    assert load_components("") == []
    assert CrisisDetector.load(components=load_components(broken)).assess("I want to die").level == Level.CRISIS


def test_train_command_writes_a_usable_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "set.jsonl"
    rows = [{"text": t, "label": "crisis"} for t in RISK] + [{"text": t, "label": "none"} for t in SAFE]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out_path = tmp_path / "m.npz"
    assert run(["crisis", "train", str(data), "--out", str(out_path), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "trained on 13 messages (6 crisis)" in out  # repeated texts count once
    assert "cross-validated (5 folds)" in out and "<- chosen" in out
    assert 0.0 < NgramClassifier.load(out_path).threshold < 1.0
    assert positives(["crisis", "distress", "none"]) == [True, False, False]


def test_train_command_can_choose_the_threshold_on_held_out_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Thresholds chosen on another writer's file: the model that scores it never saw it; the final one does."""
    train_file, held_file = tmp_path / "ours.jsonl", tmp_path / "theirs.jsonl"
    rows = [{"text": t, "label": "crisis"} for t in RISK[:4]] + [{"text": t, "label": "none"} for t in SAFE[:4]]
    held = [{"text": t, "label": "crisis"} for t in RISK[3:]] + [{"text": t, "label": "none"} for t in SAFE[3:]]
    train_file.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    held_file.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in held), encoding="utf-8")
    out_path = tmp_path / "m.npz"
    argv = ["crisis", "train", str(train_file), "--held-out", str(held_file), "--out", str(out_path),
            "--epochs", "3", "--max-none-rate", "0.5"]  # fmt: skip
    assert run(argv) == 0
    out = capsys.readouterr().out
    shared = len({r["text"] for r in rows} & {r["text"] for r in held})
    assert f"on {len({r['text'] for r in held}) - shared} held-out messages, rules + ngram model" in out
    model = NgramClassifier.load(out_path)
    assert model.sources == ("ours.jsonl", "theirs.jsonl")
    examples = unique(e for f in (train_file, held_file) for e in load_examples(f))
    assert model.version == data_version("ngram", [e.text for e in examples], positives(e.label for e in examples))


def test_the_shipped_model_is_up_to_date_with_its_training_data() -> None:
    """Retrain (`supportbot crisis train tests/data/<sources> --out bot/crisis/data/classifier.npz`)
    whenever a labelled file changes: the shipped model names the exact data it came from."""
    shipped = NgramClassifier.load(SHIPPED)
    assert shipped.sources and 0.5 <= shipped.threshold < 1.0
    examples = unique(e for name in shipped.sources for e in load_examples(DATA / name))
    assert shipped.version == data_version("ngram", [e.text for e in examples], positives(e.label for e in examples))


def test_training_is_deterministic() -> None:
    texts, labels = RISK + SAFE, [True] * len(RISK) + [False] * len(SAFE)
    first = train(texts, labels, epochs=2, progress=False)
    again = train(texts, labels, epochs=2, progress=False)
    assert np.array_equal(first.weights, again.weights) and first.bias == again.bias


def test_the_layer_uses_the_shipped_model_unless_told_otherwise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert CrisisLayer.load().detector.components[0].version == NgramClassifier.load(SHIPPED).version
    assert CrisisLayer.load("").detector.components == ()
    broken = tmp_path / "truncated.npz"
    broken.write_bytes(SHIPPED.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        layer = CrisisLayer.load(str(broken))  # fails closed: the rules alone, never no layer
    assert layer.detector.components == () and "using the rules without it" in caplog.text
    assert layer.assess("I want to kill myself", []).level == Level.CRISIS


def test_a_component_that_raises_leaves_the_rules_verdict(model: NgramClassifier) -> None:
    class Broken:
        name = "broken"
        slow = False

        def assess(self, text: str, recent: Sequence[str], rule_level: Level) -> None:
            raise RuntimeError("boom")

    detector = CrisisDetector.load(components=[Broken()])
    assert detector.assess("I want to die").level == Level.CRISIS
    assert detector.assess("hello").level == Level.NONE


def test_the_threshold_is_the_lowest_within_every_budget() -> None:
    table = [Choice(0.3, 1.0, 0.04, 0.20), Choice(0.5, 0.99, 0.03, 0.09), Choice(0.7, 0.95, 0.01, 0.05)]
    assert pick(table, max_none_rate=0.05).threshold == 0.3  # recall first
    assert pick(table, max_none_rate=0.05, max_distress_rate=0.10).threshold == 0.5
    with pytest.raises(ValueError, match="the rules alone exceed them"):
        pick(table, max_none_rate=0.0)


def test_a_long_message_is_read_in_windows_so_length_alone_never_escalates() -> None:
    shipped = NgramClassifier.load(SHIPPED)
    day = "Day {}: we walked to the market, bought bread and cooked dinner."
    ordinary = " ".join(day.format(i) for i in range(60))  # ~600 words; scored whole, this read as 0.997
    assert shipped.probability(ordinary) < shipped.threshold
    crisis = "I took all my pills an hour ago and I feel like I am fading"
    buried = " ".join(day.format(i) for i in range(20)) + " " + crisis
    assert shipped.probability(buried) >= shipped.threshold <= shipped.probability(crisis)
