"""`supportbot bench crisis` runs end to end with the worker stopped: safe replies and alerts arrive."""

from __future__ import annotations

import argparse
import json

import pytest

from bot import crisis_bench
from inference.host import this_host
from tests.conftest import POSTGRES_URL


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_bench_crisis_answers_every_message_safely_and_alerts(
    database: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["crisis", "--json", "--messages", "4", "--gap", "0.05", "--database", database]
    if database == "postgresql":
        request.getfixturevalue("postgres_server")  # skips, with the reason, where no PostgreSQL runs
        argv += ["--postgres-url", POSTGRES_URL]  # the bench makes and drops its own scratch database
    bench = argparse.ArgumentParser()
    crisis_bench.register(argparse.ArgumentParser().add_subparsers(), bench.add_subparsers())
    args = bench.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == f"host: {this_host().describe()}" and json.loads(out[-1])["host"]["processor"]
    result = json.loads(out[-1])[database]
    assert result["messages"] == 4 and result["replies_without_helpline"] == 0
    assert 0 < result["reply_ms"]["p50"] <= result["reply_ms"]["max"]
    assert 0 < result["alert_ms"]["p50"] <= result["alert_ms"]["max"]
