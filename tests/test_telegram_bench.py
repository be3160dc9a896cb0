"""`supportbot bench bot` runs end to end (tiny load): every update is answered, the JSON line parses."""

from __future__ import annotations

import argparse
import json

import pytest

from bot.channels import telegram_bench
from inference.host import this_host


def test_bench_bot_runs_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    bench = argparse.ArgumentParser()  # only this bench: the whole CLI would import every package
    telegram_bench.register(argparse.ArgumentParser().add_subparsers(), bench.add_subparsers())
    args = bench.parse_args(
        [
            "bot",
            "--json",
            "--database",
            "sqlite",
            "--seconds",
            "0.5",
            "--rate",
            "20",
            "--chats",
            "10",
            "--connections",
            "4",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert out[0] == f"host: {this_host().describe()}" and result["host"]["processor"]
    sqlite = result["sqlite"]
    assert sqlite["updates_per_s"] > 0
    for phase in (sqlite["fast"], sqlite["at_20_per_s"]):
        assert phase["failed"] == 0 and phase["answered"] == phase["sent"] > 0
    assert sqlite["one_update_alone"]["transactions"] >= 1  # the turn really ran against the database
    cores = sqlite["fast"]["cpu_cores"]  # who used the CPU: the service, and the load process by its pid
    assert cores["service"] > 0 and "load generator" in cores and "PostgreSQL" not in cores
