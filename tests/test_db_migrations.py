"""Migrations upgrade from empty, downgrade, upgrade again, and match the ORM exactly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from db import crypto, migrate, repo
from db.engine import Database, DatabaseUnavailable
from db.models import Base, User


async def _tables(url: str) -> set[str]:
    database = Database(url)
    async with database.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await database.dispose()
    return names - {"alembic_version"}


async def _diff(url: str) -> list[object]:
    database = Database(url)
    async with database.engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata)
        )
    await database.dispose()
    return diff


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    url = request.getfixturevalue("postgres_server")
    asyncio.run(migrate.downgrade(url, "base"))
    return url


def test_upgrade_downgrade_upgrade_matches_the_models(empty_url: str) -> None:
    asyncio.run(migrate.upgrade(empty_url))
    assert asyncio.run(_tables(empty_url)) == set(Base.metadata.tables)
    assert asyncio.run(_diff(empty_url)) == []
    asyncio.run(migrate.downgrade(empty_url, "base"))
    assert asyncio.run(_tables(empty_url)) == set()
    asyncio.run(migrate.upgrade(empty_url))
    assert asyncio.run(_diff(empty_url)) == []


async def test_sqlite_runs_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    async with database.engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await connection.execute(text("PRAGMA secure_delete"))).scalar() == 1
    await database.dispose()


async def test_sqlite_leaves_no_deleted_words_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    words = "a sentence only the person wrote " * 20
    async with database.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE said (words TEXT)"))
        await connection.execute(text("INSERT INTO said VALUES (:w), ('someone else stays')"), {"w": words})
    async with database.engine.begin() as connection:
        await connection.execute(text("DELETE FROM said WHERE words = :w"), {"w": words})
    await database.dispose()  # the last connection to close checkpoints the write-ahead log into the file
    stored = path.read_bytes() + (
        path.with_name("p.db-wal").read_bytes() if path.with_name("p.db-wal").exists() else b""
    )
    assert b"only the person wrote" not in stored


def test_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        asyncio.run(migrate.upgrade("postgresql+asyncpg://someone:secret@127.0.0.1:1/nowhere"))
    message = str(caught.value)
    assert "127.0.0.1:1/nowhere" in message and "secret" not in message and "\n" not in message


_CHILDREN = ("conversations", "messages")


def test_persona_lines_written_before_encryption_stay_readable_and_new_ones_are_encrypted(empty_url: str) -> None:
    async def scenario() -> tuple[list[str] | None, list[str] | None, str, list[object]]:
        await migrate.upgrade(empty_url, "0001")
        database = Database(empty_url)
        async with database.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (channel, external_id, persona_lines, opted_out, created_at)"
                    " VALUES ('t', 'old', :lines, false, CURRENT_TIMESTAMP)"
                ),
                {"lines": '["i am calm."]'},
            )
            await connection.execute(
                text(
                    "INSERT INTO conversations (user_id, status, risk_level, created_at)"
                    " VALUES (1, 'open', 0, CURRENT_TIMESTAMP)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, user_id, role, text, created_at)"
                    " VALUES (1, 1, 'user', 'hello', CURRENT_TIMESTAMP)"
                )
            )
        await database.dispose()
        await migrate.upgrade(empty_url)
        crypto.configure("a key")
        try:
            database = Database(empty_url)
            async with database.transaction() as session:
                session.add(User(channel="t", external_id="new", persona_lines=["i lost my home."]))
            async with database.transaction() as session:
                before = (await session.scalar(select(User).where(User.external_id == "old"))).persona_lines
                after = (await session.scalar(select(User).where(User.external_id == "new"))).persona_lines
                stored = await session.execute(text("SELECT persona_lines FROM users WHERE external_id = 'new'"))
                raw = stored.scalar()
            await database.dispose()
        finally:
            crypto.configure(None)
        await migrate.downgrade(empty_url, "0001")  # the encrypted lines cannot be JSON: cleared
        database = Database(empty_url)
        async with database.engine.connect() as connection:
            kept = (await connection.execute(text("SELECT persona_lines FROM users ORDER BY id"))).scalars().all()
            # SQLite alters `users` by copying it: rows that reference it must survive both ways.
            rows = [(await connection.execute(text(f"SELECT count(*) FROM {t}"))).scalar() for t in _CHILDREN]
        await database.dispose()
        return before, after, raw, list(kept), rows

    before, after, raw, kept, rows = asyncio.run(scenario())
    assert rows == [1, 1]
    assert before == ["i am calm."] and after == ["i lost my home."]
    assert raw.startswith("enc:v1:") and "home" not in raw
    assert [json.loads(k) if isinstance(k, str) else k for k in kept] == [["i am calm."], None]


def test_replicas_starting_together_prepare_the_database_once(empty_url: str) -> None:
    async def start_together() -> None:
        await asyncio.gather(*(migrate.upgrade(empty_url) for _ in range(3)))
        databases = [Database(empty_url) for _ in range(3)]

        async def sync(database: Database) -> None:
            async with database.transaction() as session:
                await repo.sync_personas(session, [("calm", "Calm", "", ["i am calm."])])

        await asyncio.gather(*(sync(database) for database in databases))
        for database in databases:
            await database.dispose()

    for _ in range(3):  # without the lock, two of three tries failed on PostgreSQL
        asyncio.run(migrate.downgrade(empty_url, "base"))
        asyncio.run(start_together())
    assert asyncio.run(_diff(empty_url)) == []
