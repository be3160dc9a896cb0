"""Applying Alembic migrations from code, so `supportbot db upgrade`, `serve` and tests share one path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import DatabaseUnavailable, create_engine, describe_failure, one_at_a_time

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | URL) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", make_url(url).render_as_string(hide_password=False).replace("%", "%%"))
    return config


def _foreign_keys_off(engine: AsyncEngine) -> None:
    """SQLite alters a column by copying its table and dropping the old one (Alembic's batch mode),
    and with foreign keys enforced that drop first deletes every row referencing the table (ON
    DELETE CASCADE): altering `users` emptied conversations and messages. So migrations run with
    them off, as Alembic expects, and `_run` checks the references afterwards."""

    @event.listens_for(engine.sync_engine, "connect")
    def _off(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()


async def _run(url: str | URL, action: str, revision: str) -> None:
    config = alembic_config(url)
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        _foreign_keys_off(engine)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)

    try:
        async with engine.begin() as connection:
            await one_at_a_time(connection)
            await connection.run_sync(run)
            if sqlite and (broken := (await connection.exec_driver_sql("PRAGMA foreign_key_check")).first()):
                raise RuntimeError(f"migration left a row of {broken[0]} pointing at a missing {broken[2]} row")
    except (OSError, OperationalError, InterfaceError) as exc:
        raise DatabaseUnavailable(describe_failure(make_url(url), exc)) from exc
    finally:
        await engine.dispose()


async def upgrade(url: str | URL, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    await _run(url, "upgrade", revision)


async def downgrade(url: str | URL, revision: str) -> None:
    """Take the database schema back to `revision` ("base" empties it)."""
    await _run(url, "downgrade", revision)
