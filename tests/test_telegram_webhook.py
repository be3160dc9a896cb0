"""The webhook route: the secret token, bad bodies, registration with Telegram, redeliveries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.channels.telegram import TELEGRAM
from bot.channels.telegram_webhook import SECRET_HEADER, WEBHOOK_PATH, webhook_secret
from bot.service import Service
from bot.settings import Settings
from bot.testing.fake_bot_api import message_update
from db.models import Message, User
from tests.doubles import EchoBackend, KeywordSafety
from tests.telegram_harness import SECRET, TOKEN, WEBHOOK_URL, sqlite, telegram_bot

CHAT = 5151


async def test_set_webhook_at_start_with_secret_and_update_kinds(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook") as bot:
        (call,) = bot.api.calls_of("setWebhook")
        assert call.params["url"] == WEBHOOK_URL
        assert call.params["secret_token"] == SECRET
        assert call.params["allowed_updates"] == ["message", "callback_query"]
        assert call.params["max_connections"] == 100
        assert not bot.api.calls_of("getUpdates")


@pytest.mark.parametrize("headers", [{}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}, {SECRET_HEADER: ""}])
async def test_missing_or_wrong_secret_is_refused_and_nothing_stored(tmp_path: Path, headers: dict) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook") as bot:
        response = await bot.client.post(WEBHOOK_PATH, json=message_update(CHAT, text="hello"), headers=headers)
        assert response.status == 403
        await asyncio.sleep(0.1)
        assert await bot.count(User) == 0 and await bot.count(Message) == 0
        assert not bot.api.calls_of("sendMessage")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"message": {"text": "no update id"}}',
        b'{"update_id": 1, "message": 5}',
        json.dumps({"update_id": 6, "message": message_update(CHAT)["message"] | {"text": 5}}).encode(),
        json.dumps({"update_id": 7, "message": message_update(CHAT, caption=["not", "words"])["message"]}).encode(),
    ],
)
async def test_malformed_body_is_400_and_nothing_stored(tmp_path: Path, body: bytes) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook") as bot:
        response = await bot.client.post(
            WEBHOOK_PATH, data=body, headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"}
        )
        assert response.status == 400
        assert await bot.count(User) == 0 and await bot.count(Message) == 0


async def test_secret_derived_from_token_when_none_configured(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", telegram_webhook_secret=None) as bot:
        secret = bot.api.calls_of("setWebhook")[0].params["secret_token"]
        assert secret == webhook_secret(bot.service.settings) and len(secret) == 64 and TOKEN not in secret
        update = message_update(CHAT, text="hello")
        assert (await bot.client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})).status == 403
        assert (await bot.client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: secret})).status == 200
        assert bot.api.texts_to(CHAT) == ["echo: hello"]


async def test_redelivered_update_gets_one_reply(database_url: str) -> None:
    """Telegram resends an update whose webhook call timed out: same update_id, same message."""
    async with telegram_bot(database_url, "webhook") as bot:
        update = message_update(CHAT, text="are you there?")
        assert await bot.deliver(update) == 200
        assert await bot.deliver(update) == 200  # after the first was answered
        again = message_update(CHAT, text="twice at once")
        statuses = await asyncio.gather(bot.deliver(again), bot.deliver(again))  # while the first is in flight
        assert statuses == [200, 200]
        assert bot.api.texts_to(CHAT) == ["echo: are you there?", "echo: twice at once"]
        assert await bot.count(Message) == 4  # two messages, two replies


async def test_redelivery_in_polling_mode_gets_one_reply(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "polling") as bot:
        first = message_update(CHAT, text="hello")
        await bot.deliver(first)
        await bot.api.wait_for_messages(CHAT, 1)
        resent = dict(first, update_id=first["update_id"] + 1000)  # e.g. fetched again after a crash
        await bot.deliver(resent)
        await bot.deliver(message_update(CHAT, text="next"))
        assert await bot.api.wait_for_messages(CHAT, 2) == ["echo: hello", "echo: next"]


async def test_polling_mode_has_no_webhook_route(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "polling") as bot:
        response = await bot.client.post(
            WEBHOOK_PATH, json=message_update(CHAT, text="hi"), headers={SECRET_HEADER: SECRET}
        )
        assert response.status == 404
        assert bot.api.calls_of("deleteWebhook")  # PTB clears a stale webhook before polling


async def test_no_token_no_telegram(tmp_path: Path) -> None:
    service = await Service.start(
        Settings(database_url=sqlite(tmp_path), model="/x"), backend=EchoBackend(), safety=KeywordSafety()
    )
    app = create_app(service)
    async with TestClient(TestServer(app)) as client:
        assert TELEGRAM not in app
        assert (await client.post(WEBHOOK_PATH, json={"update_id": 1})).status == 404
    await service.close()
