"""Shared fixtures: a database per test on SQLite and (when reachable) PostgreSQL, and test doubles
for the inference backend and the crisis layer where a test is about the dialogue's mechanics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bot.settings import Settings  # noqa: E402
from db import migrate, scratch  # noqa: E402
from db.engine import Database  # noqa: E402
from db.models import Base  # noqa: E402
from tests.doubles import EchoBackend  # noqa: E402

POSTGRES_URL = os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards; skip if none runs here."""
    try:
        url = asyncio.run(scratch.create_database(POSTGRES_URL, "supportbot_test"))
    except (TimeoutError, OSError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc}); .ci/run starts it")
    asyncio.run(migrate.upgrade(url))
    yield url
    asyncio.run(scratch.drop_database(POSTGRES_URL, url))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL: a new SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        asyncio.run(migrate.upgrade(url))
        return url
    url = request.getfixturevalue("postgres_server")
    asyncio.run(_truncate(url))
    return url


async def _truncate(url: str) -> None:
    db = Database(url)
    async with db.transaction() as session:
        tables = ", ".join(Base.metadata.tables)
        await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await db.dispose()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, model="/nonexistent", turn_lease_s=30, reply_timeout_s=5)


@pytest.fixture
def backend() -> EchoBackend:
    return EchoBackend()
