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
import time
from dataclasses import asdict
from typing import Any

import aiohttp
from aiohttp import web

from bot.channels.telegram_bench import DEFAULT_POSTGRES, SECRET, TOKEN, free_port, percentile
from bot.channels.telegram_webhook import SECRET_HEADER
from bot.settings import Settings
from bot.testing.fake_bot_api import FakeBotAPI, message_update
from db import scratch
from inference.host import this_host

OPERATOR_CHAT = -1_000_000_001
TARGET_MS = 2000.0
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
    api = FakeBotAPI(TOKEN)
    api_url = await api.start()
    bot_port, worker_port = free_port(), free_port()  # nothing will listen on the worker's
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
        async with aiohttp.ClientSession(headers={SECRET_HEADER: SECRET}) as http:
            for i in range(rounds):
                language, text = MESSAGES[i % len(MESSAGES)]
                chat_id = 5_000_000 + i
                alerts_before = len(api.calls_of("sendMessage", OPERATOR_CHAT))
                started = time.perf_counter()
                async with http.post(webhook, json=message_update(chat_id, text=text, language_code=language)) as r:
                    r.raise_for_status()
                try:
                    await api.wait_for(
                        lambda a, chat=chat_id, before=alerts_before: (
                            bool(a.calls_of("sendMessage", chat))
                            and len(a.calls_of("sendMessage", OPERATOR_CHAT)) > before
                        )
                    )
                except TimeoutError:
                    raise RuntimeError(f"message {i} ({language}) got no reply or no alert within 10 s") from None
                reply = api.calls_of("sendMessage", chat_id)[0]
                reply_ms.append(1000 * (reply.at - started))
                alert_ms.append(1000 * (api.calls_of("sendMessage", OPERATOR_CHAT)[alerts_before].at - started))
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
    return {
        "first": round(values[0], 1),
        "p50": round(percentile(values, 0.5), 1),
        "p95": round(percentile(values, 0.95), 1),
        "max": round(max(values), 1),
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
    host = this_host()
    print(f"host: {host.describe()}", flush=True)
    results = asyncio.run(_run(args))
    if args.json:
        print(json.dumps({"bench": "crisis", "target_ms": TARGET_MS, "host": asdict(host), **results}))
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
