"""The engine's connection handling: a pooled PostgreSQL connection the server dropped is replaced
before a turn uses it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db import engine as db_engine
from db.engine import Database


async def test_a_dropped_idle_connection_is_replaced_before_use(
    postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_engine, "PING_AFTER_IDLE_S", 0.0)  # every pooled connection counts as idle
    db = Database(postgres_server, pool_size=1, max_overflow=0)
    try:
        async with db.begin() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        killer = Database(postgres_server)
        async with killer.begin() as conn:
            assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await killer.dispose()
        async with db.begin() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await db.dispose()


async def test_a_connection_in_use_moments_ago_is_not_pinged(
    postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_server, pool_size=1, max_overflow=0)
    pings: list[object] = []
    monkeypatch.setattr(db.engine.dialect, "do_ping", pings.append)
    try:
        for _ in range(3):
            async with db.begin() as conn:
                await conn.execute(text("SELECT 1"))
        assert pings == []
        monkeypatch.setattr(db_engine, "PING_AFTER_IDLE_S", 0.0)
        async with db.begin() as conn:
            await conn.execute(text("SELECT 1"))
        assert len(pings) == 1
    finally:
        await db.dispose()
