"""The optional learned component: trains offline, only raises to concern, fails closed."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from bot.crisis import commands
from bot.crisis.classifier import NgramClassifier, load_components, positives, train
from bot.crisis.detector import CrisisDetector
from bot.crisis.levels import Level

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
    assert "crisis classifier disabled, using the rules alone" in caplog.text
    assert load_components(None) == []
    assert CrisisDetector.load(components=load_components(broken)).assess("I want to die").level == Level.CRISIS


def test_train_command_writes_a_usable_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "set.jsonl"
    rows = [{"text": t, "label": "crisis"} for t in RISK] + [{"text": t, "label": "none"} for t in SAFE]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out_path = tmp_path / "m.npz"
    parser = argparse.ArgumentParser()
    top = parser.add_subparsers(dest="command", required=True)
    commands.register(top, top.add_parser("bench").add_subparsers())
    args = parser.parse_args(["crisis", "train", str(data), "--out", str(out_path), "--epochs", "3"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "trained on 13 messages (6 crisis)" in out  # repeated texts count once
    assert "cross-validated (5 folds)" in out and "<- chosen" in out
    assert 0.0 < NgramClassifier.load(out_path).threshold < 1.0
    assert positives(["crisis", "distress", "none"]) == [True, False, False]
