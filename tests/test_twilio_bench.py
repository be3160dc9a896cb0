"""`supportbot bench twilio` runs end to end on a tiny local model and reports every webhook it timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.channels.twilio_bench import percentile
from bot.cli import main
from inference.host import this_host


def test_the_bench_drives_whole_calls_and_prints_json_last(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["bench", "twilio", "--model", "random:tiny-causal", "--calls", "2", "--turns", "2", "--concurrency", "2"]
    assert main([*argv, "--hold-after", "0.5", "--database-url", f"sqlite+aiosqlite:///{tmp_path}/b.db", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert "TwiML response" in out[1] and report["model"] == "random:tiny-causal"
    assert f"host: {this_host().describe()}" in out and report["host"]["processor"]
    routes = report["routes"]
    assert routes["voice"]["n"] == 2 and routes["voice/gather"]["n"] == 4 and routes["voice/status"]["n"] == 2
    assert report["twiml"]["n"] == sum(route["n"] for route in routes.values())
    assert report["reply"]["n"] == 4 and report["replies"] == {"gather": 4}
    assert routes.get("voice/pickup", {"n": 0})["n"] >= report["held_utterances"]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile([3.0], 0.95)) == (50.0, 95.0, 3.0)
