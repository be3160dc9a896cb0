"""Throw-away PostgreSQL databases for tests and benchmarks, created beside a server's existing one."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.engine import make_url


async def _execute(server_url: str, statement: str) -> None:
    import asyncpg

    url = make_url(server_url)
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=url.database,
        timeout=5,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_database(server_url: str, prefix: str) -> str:
    """Create an empty, uniquely named database on the server of `server_url`; return its URL.

    Raises OSError (or asyncpg's errors) when the server cannot be reached.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await _execute(server_url, f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, url: str) -> None:
    """Drop a database made by create_database, closing any connection still open to it."""
    await _execute(server_url, f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')


@asynccontextmanager
async def bench_database(kind: str, server_url: str) -> AsyncIterator[str]:
    """A throw-away database for one benchmark run: an SQLite file in a temporary folder, or a scratch
    PostgreSQL database beside `server_url`'s; removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        return
    url = await create_database(server_url, "supportbot_bench")
    try:
        yield url
    finally:
        await drop_database(server_url, url)
