"""`supportbot bench train` runs end to end on a tiny config and reports every figure (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from inference.host import this_host
from tests.training_fixtures import tiny_config_file


def test_bench_train_json_has_all_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_config_file(tmp_path, batching={"max_tokens": 1024})
    assert main(["bench", "train", "--config", str(path), "--steps", "2", "--quality-steps", "4", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert f"  host: {this_host().describe()}" in out and result["host"]["processor"]
    throughput = result["throughput"]
    assert set(throughput) == {"token_budget", "fixed_longest", "fixed_128"}
    for figures in throughput.values():
        assert figures["tokens_per_s"] > 0 and 0 <= figures["padding_fraction"] < 1
    # fixed batches hold at least as many examples as token-budget ones on average: a fair per-step comparison
    assert throughput["fixed_longest"]["batches_per_epoch"] <= throughput["token_budget"]["batches_per_epoch"]
    assert throughput["token_budget"]["padding_fraction"] < throughput["fixed_longest"]["padding_fraction"]
    quality = result["quality"]
    assert quality["steps"] == 4
    for run in ("pipeline", "reference"):
        assert quality[run]["eval_loss"] < quality["untrained"]["eval_loss"] and quality[run]["seconds"] > 0
    reached = quality["pipeline_to_reference_loss"]
    assert reached is None or (reached["eval_loss"] <= quality["reference"]["eval_loss"] and reached["step"] <= 8)
    assert "load average" in "\n".join(out[:-1])
