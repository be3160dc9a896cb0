"""`supportbot bench crisis`: from a crisis message arriving to the safe reply sent and operators alerted.

The issue's promise is that the crisis path never waits for the model: with the inference worker
stopped, a crisis message must be answered with safe words and helplines, and the operator chat
alerted, within 2 s. This bench runs the real service (Telegram channel in webhook mode, real
crisis layer, a database) with INFERENCE_URL pointing at a port nobody listens on, posts crisis
messages in four languages from new chats one after another, and times - from the POST leaving the
bench to the stand-in Bot API receiving the call - the reply to the person and the operator alert.
It checks that every reply is a safe reply (it names a helpline number), not a fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bot.settings import Settings
from bot.testing.fake_bot_api import Call, FakeBotAPI, message_update
from db import scratch

TOKEN = "100000:benchTOKENbenchTOKENbenchTOKENbench"
SECRET = "bench-secret"
OPERATOR_CHAT = -1_000_000_001
TARGET_MS = 2000.0
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
# (language code, text): crisis messages the rule layer must catch; one per language and kind.
MESSAGES = (
    ("en", "I have the pills in front of me and I'm going to take them all tonight"),
    ("uk", "я більше не можу, сьогодні вночі все закінчу"),
    ("ru", "выпила целую пачку таблеток, мне очень плохо"),
    ("pl", "nie chcę już żyć, mam przygotowaną linę"),
    ("en", "my husband is hitting me again and he has a knife"),
    ("uk", "нас завалило в підвалі після прильоту, є поранені"),
    ("ru", "подруга пишет что прощается и наглоталась таблеток"),
    ("pl", "pociąłem się znowu i nie mogę zatrzymać krwi"),
)


def _free_port() -> int:
    """A port nobody listens on yet: the bot's, or (never opened) the stopped inference worker's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Timings:
    """When each chat's first reply and each operator alert reached the stand-in Bot API."""

    replies: dict[int, Call] = field(default_factory=dict)
    alerts: list[Call] = field(default_factory=list)

    def record(self, call: Call) -> None:
        if call.method != "sendMessage":
            return
        chat_id = call.params["chat_id"]
        if chat_id == OPERATOR_CHAT:
            self.alerts.append(call)
        else:
            self.replies.setdefault(chat_id, call)


async def _serve_bot(settings: Settings) -> tuple[web.AppRunner, Any]:
    from bot.app import create_app
    from bot.channels.telegram import TELEGRAM
    from bot.service import Service

    service = await Service.start(settings)  # INFERENCE_URL set: the remote client, worker down
    app = create_app(service)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    await asyncio.wait_for(app[TELEGRAM].ready.wait(), 30)
    return runner, service


async def _measure(database_url: str, rounds: int, gap_s: float) -> dict[str, Any]:
    api = FakeBotAPI(TOKEN, record=False)
    timings = Timings()
    api.on_call = timings.record
    api_url = await api.start()
    bot_port, worker_port = _free_port(), _free_port()
    webhook = f"http://127.0.0.1:{bot_port}/telegram/webhook"
    settings = Settings(
        database_url=database_url,
        inference_url=f"http://127.0.0.1:{worker_port}/v1",
        http_port=bot_port,
        telegram_token=TOKEN,
        telegram_api_url=api_url,
        telegram_webhook_url=webhook,
        telegram_webhook_secret=SECRET,
        operator_chat_id=OPERATOR_CHAT,
        log_level="WARNING",
    )
    runner, service = await _serve_bot(settings)
    reply_ms, alert_ms, unsafe = [], [], 0
    helpline_numbers = _helpline_numbers()
    try:
        async with aiohttp.ClientSession(headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as http:
            for i in range(rounds):
                language, text = MESSAGES[i % len(MESSAGES)]
                chat_id = 5_000_000 + i
                alerts_before = len(timings.alerts)
                started = time.perf_counter()
                async with http.post(webhook, json=message_update(chat_id, text=text, language_code=language)) as r:
                    r.raise_for_status()
                deadline = started + 10.0
                while (chat_id not in timings.replies or len(timings.alerts) <= alerts_before) and (
                    time.perf_counter() < deadline
                ):
                    await asyncio.sleep(0.002)
                reply = timings.replies.get(chat_id)
                if reply is None or len(timings.alerts) <= alerts_before:
                    raise RuntimeError(f"message {i} ({language}) got no reply or no alert within 10 s")
                reply_ms.append(1000 * (reply.at - started))
                alert_ms.append(1000 * (timings.alerts[alerts_before].at - started))
                unsafe += not any(number in reply.params["text"] for number in helpline_numbers)
                print(f"  {i + 1}/{rounds} ({language}): reply {reply_ms[-1]:.0f} ms, alert {alert_ms[-1]:.0f} ms")
                await asyncio.sleep(gap_s)
    finally:
        await runner.cleanup()
        await service.close()
        await api.stop()
    return {
        "messages": rounds,
        "reply_ms": _summary(reply_ms),
        "alert_ms": _summary(alert_ms),
        "replies_without_helpline": unsafe,
    }


def _helpline_numbers() -> list[str]:
    from bot.crisis.helplines import HelplineDirectory

    directory = HelplineDirectory.load()
    countries = [*directory.countries.values(), directory.fallback]
    return sorted({line.number for country in countries for line in country.helplines})


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "first": round(values[0], 1),
        "p50": round(ordered[len(ordered) // 2], 1),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max": round(ordered[-1], 1),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    for kind in kinds:
        print(f"{kind}: {args.messages} crisis messages, inference worker stopped", flush=True)
        async with scratch.bench_database(kind, args.postgres_url) as url:
            results[kind] = await _measure(url, args.messages, args.gap)
        _report(kind, results[kind])
    return results


def _report(kind: str, result: dict[str, Any]) -> None:
    reply, alert = result["reply_ms"], result["alert_ms"]
    worst = max(reply["max"], alert["max"])
    verdict = "meets" if worst <= TARGET_MS and not result["replies_without_helpline"] else "misses"
    print(
        f"  {kind}: safe reply p50 {reply['p50']} ms, p95 {reply['p95']} ms, max {reply['max']} ms (first "
        f"{reply['first']} ms); operator alert p50 {alert['p50']} ms, p95 {alert['p95']} ms, max {alert['max']} ms; "
        f"replies without a helpline number: {result['replies_without_helpline']} ({verdict} <= {TARGET_MS:.0f} ms)"
    )


def bench(args: argparse.Namespace) -> int:
    results = asyncio.run(_run(args))
    if args.json:
        print(json.dumps({"bench": "crisis", "target_ms": TARGET_MS, **results}))
    return 0


def register(commands: argparse._SubParsersAction, bench_commands: argparse._SubParsersAction) -> None:
    parser = bench_commands.add_parser(
        "crisis", help="crisis message -> safe reply and operator alert, with the inference worker stopped"
    )
    parser.add_argument("--messages", type=int, default=16, help="crisis messages, each from a new chat")
    parser.add_argument("--gap", type=float, default=1.2, help="seconds between messages (operator chat: 1 message/s)")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="admin URL; a scratch database is used")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.set_defaults(func=bench)
