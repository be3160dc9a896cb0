"""A running bot for the Telegram tests: the service's real aiohttp app with the Telegram channel
mounted, talking through PTB's HTTP stack to the local stand-in Bot API, in webhook or polling mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.app import create_app
from bot.channels.telegram import TELEGRAM, TelegramChannel
from bot.channels.telegram_webhook import SECRET_HEADER, WEBHOOK_PATH
from bot.safety import Safety
from bot.service import Service
from bot.settings import Settings
from bot.testing.fake_bot_api import FakeBotAPI
from db.models import Message, User
from inference.api import ChatBackend
from tests.doubles import EchoBackend, KeywordSafety

TOKEN = "123456789:AAtestTOKENtestTOKENtestTOKENtest00"
SECRET = "webhook-secret_42"
WEBHOOK_URL = "https://bot.example.org/telegram/webhook"
OPERATORS = -100777
MODES = ["webhook", "polling"]


def sqlite(tmp_path: Path) -> str:
    """A database for tests that need one but not both kinds (Service.start migrates it)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'telegram.db'}"


@dataclass
class Harness:
    api: FakeBotAPI
    service: Service
    client: TestClient
    channel: TelegramChannel
    mode: str

    async def deliver(self, update: dict[str, Any]) -> int | None:
        """Hand an update to the bot the way Telegram would in this mode (the webhook answer's status)."""
        if self.mode == "webhook":
            response = await self.client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
            return response.status
        self.api.push_update(update)
        return None

    async def count(self, model: type) -> int:
        async with self.service.db.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    async def user(self, chat_id: int) -> User | None:
        async with self.service.db.transaction() as session:
            return await session.scalar(select(User).where(User.external_id == str(chat_id)))

    async def messages(self, chat_id: int) -> list[Message]:
        async with self.service.db.transaction() as session:
            user = await session.scalar(select(User).where(User.external_id == str(chat_id)))
            rows = await session.scalars(select(Message).where(Message.user_id == user.id).order_by(Message.id))
            return list(rows)


@asynccontextmanager
async def telegram_bot(
    database_url: str,
    mode: str,
    *,
    backend: ChatBackend | None = None,
    safety: Safety | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    """Start stand-in API, service and HTTP app; tests get the harness once the bot is connected."""
    api = FakeBotAPI(TOKEN)
    await api.start()
    values: dict[str, Any] = {
        "database_url": database_url,
        "model": "/nonexistent",
        "reply_timeout_s": 5,
        "turn_lease_s": 30,
        "telegram_token": TOKEN,
        "telegram_api_url": api.base_url,
        "telegram_webhook_url": WEBHOOK_URL if mode == "webhook" else None,
        "telegram_webhook_secret": SECRET,
        "telegram_chat_rate": 1000.0,  # pacing has its own test; elsewhere it would only slow tests down
        "telegram_chat_burst": 100,
    }
    values.update(overrides)
    service = await Service.start(
        Settings(**values), backend=backend or EchoBackend(), safety=safety or KeywordSafety()
    )
    app = create_app(service)
    client = TestClient(TestServer(app))
    try:
        await client.start_server()
        channel = app[TELEGRAM]
        await asyncio.wait_for(channel.ready.wait(), 5)
        yield Harness(api, service, client, channel, mode)
    finally:
        await client.close()
        await service.close()
        await api.stop()
