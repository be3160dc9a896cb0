"""Throw-away PostgreSQL databases for tests and benchmarks, created beside a server's existing one."""

from __future__ import annotations

import uuid

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
