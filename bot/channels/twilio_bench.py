"""`supportbot bench twilio`: how long Twilio waits for each TwiML answer of the phone line.

The bot's real HTTP app (create_app) runs on a local port with the model in process; simulated calls
play Twilio's part: each webhook is signed as Twilio signs it, each caller says the user turns of a
bundled support conversation, and a <Redirect> after a holding phrase is followed as Twilio follows
it. Every webhook's response time is what Twilio would measure, minus the network; the target is
p95 <= 1.5 s. The database is a fresh SQLite file unless --database-url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from tqdm import tqdm
from twilio.request_validator import RequestValidator

from bot.settings import Settings, SettingsError, load_settings
from inference.host import Host, this_host

TARGET_P95_S = 1.5
_SID, _TOKEN = "AC" + "0" * 32, "bench-auth-token"


class BenchError(Exception):
    """The bench cannot run; the message says why in one line."""


@dataclass
class Timings:
    """Response times by route, and per utterance: holds and time until the reply was spoken."""

    by_route: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    reply_s: list[float] = field(default_factory=list)
    held: int = 0
    replies: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class SimulatedCall:
    """One caller, driving the webhooks the way Twilio does."""

    def __init__(self, session: ClientSession, base: str, number: str, sid: str, timings: Timings) -> None:
        self.session, self.base, self.number, self.sid, self.timings = session, base, number, sid, timings
        self.validator = RequestValidator(_TOKEN)

    async def post(self, url: str, **params: str) -> ET.Element:
        form = {"CallSid": self.sid, "AccountSid": _SID, "From": self.number, "To": "+15005550006", **params}
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, form)}
        started = time.perf_counter()
        async with self.session.post(url, data=form, headers=headers) as response:
            body = await response.text()
            if response.status != 200:
                raise RuntimeError(f"{urlsplit(url).path} answered HTTP {response.status}: {body[:200]}")
        self.timings.by_route[urlsplit(url).path.removeprefix("/twilio/")].append(time.perf_counter() - started)
        return ET.fromstring(body)

    def next_url(self, current: str, twiml: ET.Element) -> str | None:
        gather, redirect = twiml.find("Gather"), twiml.find("Redirect")
        target = gather.get("action") if gather is not None else (redirect.text if redirect is not None else None)
        return urljoin(current, target) if target else None

    async def run(self, utterances: list[str], progress: tqdm) -> None:
        url: str | None = f"{self.base}/twilio/voice"
        twiml = await self.post(url)
        for speech in utterances:
            assert url is not None
            url = self.next_url(url, twiml)
            if url is None:  # a hang-up or a transfer: the call is over
                break
            started = time.perf_counter()
            twiml = await self.post(url, SpeechResult=speech, Confidence="0.9")
            holds = 0
            while twiml.find("Redirect") is not None:
                url = self.next_url(url, twiml)
                assert url is not None
                holds += 1
                twiml = await self.post(url)
            self.timings.reply_s.append(time.perf_counter() - started)
            self.timings.held += holds > 0
            self.timings.replies["dial" if twiml.find("Dial") is not None else "gather"] += 1
            progress.update()
        await self.post(f"{self.base}/twilio/voice/status", CallStatus="completed", CallDuration="60")


def _utterances(turns: int) -> list[list[str]]:
    from inference.synthetic import sample_conversations

    chats = [chat["turns"][0::2] for chat in sample_conversations()]
    return [(chat * turns)[:turns] for chat in chats]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


def _figures(values: list[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "p50_s": round(statistics.median(values), 3),
        "p95_s": round(percentile(values, 0.95), 3),
        "max_s": round(max(values), 3),
    }


async def _bench(settings: Settings, calls: int, turns: int, concurrency: int) -> dict[str, Any]:
    from bot.app import create_app
    from bot.service import Service, StartupError, open_backend

    backend = await open_backend(settings)
    if backend is None:
        raise BenchError(
            f"the model {settings.model!r} could not be loaded (build the demo model with `make demo-model`)"
        )
    try:
        service = await Service.start(settings, backend=backend)
    except StartupError as exc:
        await backend.aclose()
        raise BenchError(str(exc)) from None
    timings = Timings()
    conversations = _utterances(turns)
    server = TestServer(create_app(service), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    gate = asyncio.Semaphore(concurrency)
    load_before = os.getloadavg()
    try:
        async with ClientSession() as session:
            with tqdm(total=calls * turns, desc="utterances", unit="utt") as progress:

                async def one(index: int) -> None:
                    async with gate:
                        call = SimulatedCall(session, base, f"+1415555{index:04d}", f"CA{index:032x}", timings)
                        await call.run(conversations[index % len(conversations)], progress)

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(calls)))
                elapsed = time.perf_counter() - started
    finally:
        await server.close()
        await service.close()
    every = [t for values in timings.by_route.values() for t in values]
    return {
        "model": backend.model_name,
        "calls": calls,
        "turns": turns,
        "concurrency": concurrency,
        "hold_after_s": settings.twilio_hold_after_s,
        "seconds": round(elapsed, 1),
        "twiml": _figures(every),
        "routes": {route: _figures(v) for route, v in sorted(timings.by_route.items())},
        "reply": _figures(timings.reply_s),
        "held_utterances": timings.held,
        "replies": dict(timings.replies),
        "target_p95_s": TARGET_P95_S,
        "meets_target": percentile(every, 0.95) <= TARGET_P95_S,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "host": asdict(this_host()),
    }


def _render(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model']}: {report['calls']} calls x {report['turns']} utterances,"
        f" {report['concurrency']} at once, holding phrase after {report['hold_after_s']} s,"
        f" {report['seconds']} s in all",
        f"{'TwiML response':24}{'n':>6}{'p50 s':>8}{'p95 s':>8}{'max s':>8}",
    ]
    for name, f in [
        ("all webhooks", report["twiml"]),
        *report["routes"].items(),
        ("until reply (with holds)", report["reply"]),
    ]:
        lines.append(f"{name:24}{f['n']:>6}{f['p50_s']:>8.3f}{f['p95_s']:>8.3f}{f['max_s']:>8.3f}")
    verdict = "meets" if report["meets_target"] else "MISSES"
    lines.append(
        f"{report['held_utterances']} utterances got a holding phrase; p95 {report['twiml']['p95_s']} s {verdict}"
        f" the {report['target_p95_s']} s target"
    )
    lines.append(
        f"load average before {report['load_before']} after {report['load_after']} on {report['cpu_count']} CPUs"
    )
    lines.append(f"host: {Host(**report['host']).describe()}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        base = load_settings()
    except SettingsError as exc:
        print(f"supportbot: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        database = args.database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        changes: dict[str, object] = {
            "database_url": database,
            "twilio_account_sid": _SID,
            "twilio_auth_token": _TOKEN,
            "public_url": None,
            "telegram_token": None,
            "twilio_sms_from": None,
        }
        if args.model:
            changes["model"] = args.model
        if args.hold_after is not None:
            changes["twilio_hold_after_s"] = args.hold_after
        settings = Settings(**{**base.model_dump(), **changes})
        try:
            report = asyncio.run(_bench(settings, args.calls, args.turns, args.concurrency))
        except BenchError as exc:
            print(f"supportbot: {exc}", file=sys.stderr)
            return 2
    print(_render(report))
    if args.json:
        print(json.dumps(report))
    return 0


def register(commands: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    twilio = bench.add_parser(
        "twilio", help="TwiML response time of the phone line (p50/p95) with the model in process"
    )
    twilio.add_argument("--model", help="model directory or random:<size> (default: SUPPORTBOT_MODEL)")
    twilio.add_argument("--calls", type=int, default=16, help="simulated calls (default 16)")
    twilio.add_argument("--turns", type=int, default=3, help="utterances per call (default 3)")
    twilio.add_argument("--concurrency", type=int, default=4, help="calls at once (default 4)")
    twilio.add_argument("--hold-after", type=float, help="seconds before a holding phrase (default: the setting)")
    twilio.add_argument("--database-url", help="database to use (default: a fresh SQLite file)")
    twilio.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    twilio.set_defaults(func=run)
