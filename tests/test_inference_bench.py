"""`supportbot bench inference` end to end on a tiny random model: figures and the JSON line."""

from __future__ import annotations

import json

import pytest

from bot.cli import main
from inference.bench import baseline_sample, build_workload
from inference.host import this_host


@pytest.mark.parametrize("via", ["http", "inprocess"])
def test_bench_inference_prints_figures_and_json(capsys, via):
    code = main(
        [
            "bench",
            "inference",
            "--model",
            "random:tiny-causal",
            "--concurrency",
            "3",
            "--turns",
            "2",
            "--max-tokens",
            "6",
            "--max-wait-ms",
            "200",
            "--baseline-sample",
            "0",
            "--via",
            via,
            "--lanes",
            "1",
            "--json",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    report = json.loads(out[-1])
    assert "throughput x" in "\n".join(out[:-1])
    assert f"host: {this_host().describe()}" in out and report["host"]["cpus"] >= 1
    assert (report["requests"], report["batched"]["replies"], report["sequential"]["replies"]) == (6, 6, 6)
    assert report["agreement"] == 1.0 and report["agreement_compared"] == 6  # greedy fp32: batched == alone
    assert report["mean_batch_size"] > 1 and report["lanes"] == 1
    assert report["throughput_ratio"] > 0 and report["p95_over_lone_p50"] > 0
    assert report["batched"]["mean_prompt_tokens"] == report["sequential"]["mean_prompt_tokens"]


def test_rounds_report_the_median_round_and_every_ratio(capsys):
    args = ["bench", "inference", "--model", "random:tiny-causal", "--concurrency", "2", "--max-tokens", "4"]
    assert main([*args, "--baseline-sample", "0", "--via", "inprocess", "--rounds", "3", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    ratios = [r["throughput_ratio"] for r in report["rounds"]]
    assert len(ratios) == 3 and ratios == sorted(ratios)
    assert report["throughput_ratio"] == ratios[1]  # the median round's table
    assert report["rounds"][1]["batched_replies_per_s"] == report["batched"]["replies_per_s"]
    assert all(r["agreement"] == 1.0 for r in report["rounds"])
    listed = "3 rounds, the table is the median one: throughput " + ", ".join(f"x{x}" for x in ratios)
    assert listed in "\n".join(out)


def test_bench_reports_an_unloadable_model(capsys, tmp_path):
    assert main(["bench", "inference", "--model", str(tmp_path / "absent"), "--concurrency", "1"]) == 2
    assert "absent" in capsys.readouterr().err


def test_baseline_sample_holds_every_turn_in_each_half():
    workload = build_workload(16, 2)
    picks = baseline_sample(workload, 8)
    assert len(set(picks)) == 8
    turn = [t for conversation in workload.conversations for t in range(len(conversation))]  # per request
    for half in (picks[::2], picks[1::2]):
        assert sorted({turn[i] for i in half}) == [0, 1]
    assert baseline_sample(workload, 0) == list(range(len(workload.requests)))


def test_conversations_past_the_bundled_chats_are_all_distinct():
    workload = build_workload(64, 2)
    assert len({tuple(m.content for m in request) for request in workload.requests}) == len(workload.requests)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lanes", "0", "must be at least 1, not 0"),
        ("--rounds", "0", "must be at least 1, not 0"),
        ("--max-batch-size", "many", "'many' is not a whole number"),
    ],
)
def test_bad_counts_are_usage_errors_not_tracebacks(capsys, option, value, message):
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "inference", "--model", "random:tiny-causal", "--concurrency", "2", option, value])
    assert stopped.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err
