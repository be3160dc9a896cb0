"""`supportbot crisis check|eval`, driven through the registrar as the CLI builds it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bot.crisis import commands
from bot.crisis.lexicon import load_lexicon


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="supportbot")
    top = parser.add_subparsers(dest="command", required=True)
    bench = top.add_parser("bench").add_subparsers(dest="bench")
    commands.register(top, bench)
    args = parser.parse_args(argv)
    return args.func(args)


def test_check_prints_level_tags_and_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["crisis", "check", "tonight", "--context", "I saved my pills", "--context", "I want to die"]) == 0
    out = capsys.readouterr().out
    assert "level: emergency (label crisis)" in out
    versions = load_lexicon().versions
    assert f"combination: combo.plan_means_time @ {versions['combinations.yaml']}" in out
    assert f"context: en.self.want_die @ {versions['en.yaml']}" in out


def test_check_json_and_safe_reply(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["crisis", "check", "хочу вмерти", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["label"] == "crisis" and "uk.self.want_die" in [e["rule_id"] for e in data["evidence"]]
    assert run(["crisis", "check", "хочу вмерти", "--reply", "--phone", "+380671234567", "--locale", "uk"]) == 0
    out = capsys.readouterr().out
    assert "safe reply (uk, resources UA)" in out and "7333" in out


def test_eval_prints_figures_and_json_predictions_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"text": "I want to kill myself", "label": "crisis", "lang": "en"},
        {"text": "мені дуже самотньо", "label": "distress", "lang": "uk"},
        {"text": "this exam is killing me", "label": "none", "lang": "en"},
        {"text": "tonight", "label": "crisis", "lang": "en", "context": ["I have the pills ready", "I want to die"]},
        {"text": "hello", "label": "crisis", "lang": "pl"},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert run(["crisis", "eval", str(path), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert report["predictions"] == ["crisis", "distress", "none", "crisis", "none"]
    assert report["crisis_recall"] == pytest.approx(2 / 3)
    assert report["none_to_crisis_rate"] == 0.0
    assert report["per_language"]["pl"]["crisis_recall"] == 0.0
    assert report["confusion"]["crisis"]["none"] == 1
    assert set(report["latency_ms"]) == {"p50", "p95", "max"}
    assert any(line.startswith("assessment latency ms: p50") for line in out)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "x", "label": "maybe"}\n', "set.jsonl:1: 'label' must be one of"),
        ('{"text": "x", "label": "none"}\nnot json\n', "set.jsonl:2: not JSON"),
        ("", "no examples"),
    ],
)
def test_eval_rejects_a_bad_file_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str], content, message) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(content, encoding="utf-8")
    assert run(["crisis", "eval", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_broken_lexicon_stops_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [{id: x, level: huge, patterns: [a]}]\n", encoding="utf-8")
    assert run(["crisis", "check", "hi", "--lexicon", str(bad)]) == 2
    assert "bad.yaml: rules[0] (x): unknown level 'huge'" in capsys.readouterr().err
