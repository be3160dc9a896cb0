"""Opening the database: the async engine, its session factory, and SQLite's pragmas."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


class DatabaseUnavailable(Exception):
    """The database cannot be reached or refused the operation."""


# What a database failure looks like to a caller: SQLAlchemy's wrapped driver errors, plus the raw
# OSError (connection refused, timeout) that asyncpg raises while connecting.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)


BUSY_TIMEOUT_S = 30.0  # how long a transaction waits for another process's SQLite write lock
_BUSY_FIRST_S, _BUSY_MAX_S = 0.001, 0.05


class _InlineCursor:
    """An aiosqlite-shaped cursor whose calls run at once on the event loop's thread (see _InlineSQLite)."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> _InlineCursor:
        return self

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> _InlineCursor:
        """Run the statement; while another process holds the write lock, wait without blocking the loop."""
        delay, deadline = _BUSY_FIRST_S, time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._cursor.execute(sql, parameters)
                return self
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BUSY_MAX_S)

    async def executemany(self, sql: str, parameters: Any) -> _InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _InlineSQLite:
    """The aiosqlite connection interface SQLAlchemy's aiosqlite dialect uses, without aiosqlite's thread.

    aiosqlite runs every call in a worker thread; a turn made ~30 such calls (cursor, execute, fetch,
    close per statement), and the hand-offs cost more CPU than SQLite itself (profiled: ~half of a
    turn's time). Statements on a local WAL file take microseconds, so they run here directly. The
    one wait that can be long - another process holding the write lock - is done by
    `_InlineCursor.execute` with asyncio.sleep (busy_timeout is 0), never by blocking the loop.
    With synchronous=NORMAL a commit does not fsync; a WAL checkpoint (every ~1000 pages) does,
    and that short pause does block the loop.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @classmethod
    async def connect(cls, database: str) -> _InlineSQLite:
        connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=0")
        return cls(connection)

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level

    def cursor(self) -> _InlineCursor:
        return _InlineCursor(self._connection.cursor())

    def begin_immediate(self) -> bool:
        """BEGIN IMMEDIATE straight on the driver; False if it failed (another process holds the write
        lock, say), for the caller to retry on the cursor path, which waits and reports errors as usual."""
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return False
        return True

    async def execute(self, sql: str, parameters: Any = ()) -> _InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._connection.create_function(*args, **kwargs)

    async def commit(self) -> None:
        self._connection.commit()

    async def rollback(self) -> None:
        self._connection.rollback()

    async def close(self) -> None:
        self._connection.close()

    def stop(self) -> None:
        self._connection.close()


def _prepare_sqlite(engine: AsyncEngine) -> None:
    """WAL for concurrent readers, enforced foreign keys, and BEGIN IMMEDIATE.

    BEGIN IMMEDIATE takes the write lock up front, so a transaction that reads then writes
    waits for the lock instead of failing with SQLITE_BUSY when another writer committed.
    WAL with synchronous=NORMAL: a commit survives a crash of the process; a power loss may
    lose the last transactions, never corrupt the file. secure_delete: what a person deletes is
    overwritten in the file, not left readable in its free space.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Two per turn: straight on the driver, not as a statement through SQLAlchemy (~40 us each).
        if not connection.connection.driver_connection.begin_immediate():
            connection.exec_driver_sql("BEGIN IMMEDIATE")


# A pooled PostgreSQL connection idle longer than this is pinged before use (a restarted server or a
# dropped TCP connection shows there, not in a person's turn).
PING_AFTER_IDLE_S = 5.0
_CHECKED_IN = "supportbot_checked_in"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling only where it can matter: SQLAlchemy's pool_pre_ping pings every
    checkout (BEGIN; SELECT; ROLLBACK on asyncpg: three round trips), which was 6 of a turn's 13 round
    trips under load. A connection back in the pool for less than PING_AFTER_IDLE_S is used as it is;
    if the server went away in that window, the failing statement invalidates the whole pool."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None or time.monotonic() - checked_in < PING_AFTER_IDLE_S:
            return  # new, or in use moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # driver errors vary; the pool replaces the connection and retries
            raise DisconnectionError(f"idle connection failed its ping: {type(exc).__name__}") from exc


def _ensure_sqlite_folder(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An async engine for SQLite (aiosqlite) or PostgreSQL (asyncpg) with the project's settings."""
    url = make_url(url)
    kwargs.setdefault("hide_parameters", True)  # errors that reach the log must not carry message text
    if url.get_backend_name() == "sqlite":
        _ensure_sqlite_folder(url)
        database = url.database or ":memory:"
        engine = create_async_engine(url, async_creator=lambda: _InlineSQLite.connect(database), **kwargs)
        _prepare_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


class Database:
    """The engine and session factory one process shares."""

    def __init__(self, url: str | URL, **engine_kwargs: Any) -> None:
        self.url = make_url(url)
        self.engine = create_engine(self.url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queueing this process's transactions on an asyncio lock
        # keeps them from sleeping in SQLite's busy handler; other processes still wait on busy_timeout.
        self._writer = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends, rolled back entirely if it raises."""
        if self._writer is None:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with self._writer, self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """Like `transaction`, on a Core connection: the turn runs here, without the ORM's per-object work."""
        if self._writer is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._writer, self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """For work that is ONE statement on PostgreSQL: it runs without BEGIN/COMMIT (two round trips
        saved), atomic by itself. On SQLite, where a transaction costs no round trip, it is `begin`."""
        if self._writer is not None:
            async with self.begin() as connection:
                yield connection
            return
        async with self.engine.connect() as connection:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")

    async def ping(self) -> None:
        """Raise DatabaseUnavailable unless a trivial query succeeds."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:  # driver errors vary: OSError, asyncpg, sqlite3
            raise DatabaseUnavailable(describe_failure(self.url, exc)) from exc

    async def dispose(self) -> None:
        await self.engine.dispose()


STARTUP_LOCK = 0x5B07_57A7  # a PostgreSQL advisory lock id: "one process prepares the database at a time"


async def one_at_a_time(connection: AsyncConnection) -> None:
    """On PostgreSQL, wait until no other process prepares the database (migrations, the built-in
    personas), holding the lock to the end of `connection`'s transaction: replicas starting together
    would otherwise both create the same tables or rows, and one would fail. SQLite's writers
    already take turns."""
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": STARTUP_LOCK})


def describe_failure(url: URL, exc: BaseException) -> str:
    """One line naming the database (password hidden) and the reason, for start-up errors."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot use database {url.render_as_string(hide_password=True)}: {reason}"
