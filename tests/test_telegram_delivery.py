"""Getting replies out: per-chat order under PTB's concurrency, flood limits, retries, start-up."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from telegram.error import NetworkError, TimedOut

from bot.app import create_app
from bot.channels.telegram import TELEGRAM, TelegramChannel
from bot.channels.telegram_http import AiohttpRequest
from bot.service import Service, StartupError
from bot.settings import Settings
from bot.testing.fake_bot_api import FakeBotAPI, message_update
from tests.doubles import EchoBackend, KeywordSafety
from tests.telegram_harness import TOKEN, sqlite, telegram_bot

CHAT = 6161


async def test_twenty_quick_messages_from_one_chat_get_twenty_replies_in_order(database_url: str) -> None:
    """Polling hands PTB a batch; with concurrent updates each is its own task, yet one chat stays in order."""
    async with telegram_bot(database_url, "polling", backend=EchoBackend(delay=0.01)) as bot:
        for i in range(20):
            bot.api.push_update(message_update(CHAT, text=f"message {i}"))
        texts = await bot.api.wait_for_messages(CHAT, 20)
        assert texts == [f"echo: message {i}" for i in range(20)]
        processor = bot.channel.application.update_processor
        for _ in range(100):  # the last handler returns just after its reply was sent
            if processor.chats_in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert processor.chats_in_flight == 0  # no per-chat lock left behind


async def test_chats_run_concurrently_and_each_stays_in_order(tmp_path: Path) -> None:
    backend = EchoBackend(delay=0.05)
    async with telegram_bot(sqlite(tmp_path), "polling", backend=backend) as bot:
        chats = [7001, 7002, 7003, 7004]
        for i in range(3):
            for chat in chats:
                bot.api.push_update(message_update(chat, text=f"{chat} says {i}"))
        for chat in chats:
            assert await bot.api.wait_for_messages(chat, 3) == [f"echo: {chat} says {i}" for i in range(3)]
        assert backend.max_in_flight > 1  # different chats really overlapped


async def test_concurrent_webhook_calls_of_one_chat_are_answered_in_processing_order(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", backend=EchoBackend(delay=0.005)) as bot:
        updates = [message_update(CHAT, text=f"m{i}") for i in range(10)]
        assert await asyncio.gather(*(bot.deliver(u) for u in updates)) == [200] * 10
        stored = [m.text for m in await bot.messages(CHAT) if m.role == "user"]
        assert sorted(stored) == sorted(f"m{i}" for i in range(10))
        assert bot.api.texts_to(CHAT) == [f"echo: {text}" for text in stored]


async def test_429_with_retry_after_on_send_message_still_delivers(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook") as bot:
        bot.api.fail("sendMessage", 429, retry_after=1)
        assert await bot.deliver(message_update(CHAT, text="hello")) == 200
        first, second = bot.api.calls_of("sendMessage", CHAT)
        assert second.at - first.at >= 1.0  # retry_after honoured
        assert bot.api.texts_to(CHAT) == ["echo: hello", "echo: hello"]  # the refused one, then the delivered one


async def test_network_failures_are_retried_with_backoff(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "polling") as bot:
        bot.api.fail("sendMessage", 502, times=2)
        await bot.deliver(message_update(CHAT, text="hello"))
        await bot.api.wait_for(lambda api: len(api.calls_of("sendMessage", CHAT)) == 3, timeout=5)
        first, second, third = bot.api.calls_of("sendMessage", CHAT)
        assert second.at - first.at >= 0.5 and third.at - second.at >= 1.0  # exponential backoff


async def test_a_refused_request_is_not_retried(tmp_path: Path) -> None:
    """400 means the request itself is wrong: sending it again cannot help."""
    async with telegram_bot(sqlite(tmp_path), "webhook") as bot:
        bot.api.fail("sendMessage", 400)
        assert await bot.deliver(message_update(CHAT, text="hello")) == 200
        await asyncio.sleep(0.6)  # longer than the first network backoff
        assert len(bot.api.calls_of("sendMessage", CHAT)) == 1


async def test_replies_to_one_chat_are_paced(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "polling", telegram_chat_rate=5.0, telegram_chat_burst=1) as bot:
        for i in range(4):
            bot.api.push_update(message_update(CHAT, text=f"quick {i}"))
        await bot.api.wait_for_messages(CHAT, 4)
        times = [c.at for c in bot.api.calls_of("sendMessage", CHAT)]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 0.15, gaps  # 5 per second, with timer slack


@pytest.mark.parametrize(
    ("token", "refused", "says"),
    [("999:" + "B" * 35, None, "TELEGRAM_TOKEN"), (TOKEN, "setWebhook", "refused the channel's set-up")],
)
async def test_refused_set_up_stops_start_up(tmp_path: Path, token: str, refused: str | None, says: str) -> None:
    api = FakeBotAPI(token)  # a Bot API that does not know our token, or refuses the webhook URL
    await api.start()
    if refused:
        api.fail(refused, 400)
    settings = Settings(
        database_url=sqlite(tmp_path),
        model="/x",
        telegram_token=TOKEN,
        telegram_api_url=api.base_url,
        telegram_webhook_url="https://bot.example.org/telegram/webhook",
    )
    service = await Service.start(settings, backend=EchoBackend(), safety=KeywordSafety())
    channel = TelegramChannel(service)
    with pytest.raises(StartupError, match=says):
        await channel.start()
    await channel.stop()
    await service.close()
    await api.stop()


async def test_unreachable_bot_api_is_retried_while_the_service_runs(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        database_url=sqlite(tmp_path), model="/x", telegram_token=TOKEN, telegram_api_url=f"http://127.0.0.1:{port}/bot"
    )
    service = await Service.start(settings, backend=EchoBackend(), safety=KeywordSafety())
    app = create_app(service)
    api = FakeBotAPI(TOKEN)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200  # up without Telegram
        channel = app[TELEGRAM]
        assert not channel.ready.is_set()
        await api.start(port=port)
        await asyncio.wait_for(channel.ready.wait(), 10)
        api.push_update(message_update(CHAT, text="finally"))
        assert await api.wait_for_messages(CHAT, 1) == ["echo: finally"]
    await service.close()
    await api.stop()


async def test_transport_maps_timeouts_and_refusals_to_ptb_errors() -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/slow", slow)
    request = AiohttpRequest(2)
    await request.initialize()
    async with TestServer(app) as server:
        with pytest.raises(TimedOut):
            await request.do_request(str(server.make_url("/slow")), "POST", read_timeout=0.2)
        closed_port = server.port
    with pytest.raises(NetworkError):
        await request.do_request(f"http://127.0.0.1:{closed_port}/slow", "POST")
    await request.shutdown()
