"""Telegram's side of `supportbot bench bot`, in a process of its own so it does not share the bot's
event loop: the stand-in Bot API that receives the bot's replies, and a load generator that posts
updates to the bot's webhook the way Telegram does (many chats, a bounded number of connections).

Each update's text ends in `#<sequence>`; the stand-in model echoes it, so the arrival of the
matching sendMessage at the stand-in marks the end of that update's trip through the service.
"""

from __future__ import annotations

import asyncio
import re
import time
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import ClientSession, TCPConnector
from tqdm import tqdm

from bot.channels.telegram_webhook import SECRET_HEADER
from bot.testing.fake_bot_api import Call, FakeBotAPI, message_update

_SEQUENCE = re.compile(r"#(\d+)$")


def update_text(sequence: int) -> str:
    return f"I had a long day at work and I just want to talk for a bit #{sequence}"


class LoadSide:
    """Sends updates, notes when each one's reply reached the stand-in Bot API."""

    def __init__(self, token: str, secret: str) -> None:
        self.api = FakeBotAPI(token, record=False)
        self.api.on_call = self._on_call
        self.headers = {SECRET_HEADER: secret}
        self.sent_at: dict[int, float] = {}
        self.replied_at: dict[int, float] = {}
        self.next_sequence = 1

    def _on_call(self, call: Call) -> None:
        if call.method == "sendMessage":
            found = _SEQUENCE.search(str(call.params.get("text", "")))
            if found:
                self.replied_at[int(found[1])] = call.at

    async def _post(self, session: ClientSession, url: str, chats: int) -> bool:
        """One update from the next chat in turn: `chats` updates in a row come from `chats` different chats."""
        sequence = self.next_sequence
        self.next_sequence += 1
        body = message_update(1 + sequence % chats, text=update_text(sequence), update_id=sequence)
        self.sent_at[sequence] = time.perf_counter()
        async with session.post(url, json=body, headers=self.headers) as response:
            await response.read()
            return response.status == 200

    def _summary(self, sequences: range, elapsed: float, failed: int, lag_ms: float = 0.0) -> dict[str, Any]:
        latencies = [
            (self.replied_at[s] - self.sent_at[s]) * 1000
            for s in sequences
            if s in self.replied_at and s in self.sent_at
        ]
        return {
            "sent": len(sequences),
            "answered": len(latencies),
            "failed": failed,
            "elapsed_s": elapsed,
            "latencies_ms": latencies,
            "max_send_lag_ms": lag_ms,
        }

    async def closed_loop(
        self, url: str, *, connections: int, chats: int, seconds: float = float("inf"), count: int | None = None
    ) -> dict[str, Any]:
        """As fast as the bot answers: `connections` webhook calls in flight, like Telegram's max_connections;
        for `seconds`, or until `count` updates were sent."""
        first, failed = self.next_sequence, 0
        deadline = time.perf_counter() + seconds
        last = first + count if count is not None else None
        progress = tqdm(desc="  as fast as possible", total=count, unit=" updates", leave=False)

        async def worker(session: ClientSession) -> None:
            nonlocal failed
            while time.perf_counter() < deadline and (last is None or self.next_sequence < last):
                if not await self._post(session, url, chats):
                    failed += 1
                progress.update()

        started = time.perf_counter()
        async with ClientSession(connector=TCPConnector(limit=connections)) as session:
            await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
        progress.close()
        await asyncio.sleep(0.2)  # replies of the last calls are already in (each call waits for its reply)
        return self._summary(range(first, self.next_sequence), elapsed, failed)

    async def open_loop(self, url: str, *, rate: float, seconds: float, chats: int) -> dict[str, Any]:
        """A fixed offered rate, whatever the bot's speed: updates leave on schedule, not after replies."""
        count = int(rate * seconds)
        first, lag = self.next_sequence, 0.0
        calls: list[asyncio.Task[bool]] = []
        async with ClientSession(connector=TCPConnector(limit=0)) as session:
            started = time.perf_counter()
            for index in tqdm(range(count), desc=f"  {rate:g} updates/s", unit=" updates", leave=False):
                due = started + index / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                lag = max(lag, time.perf_counter() - due)
                calls.append(asyncio.create_task(self._post(session, url, chats)))
            results = await asyncio.gather(*calls)
            elapsed = time.perf_counter() - started
        failed = results.count(False)
        await asyncio.sleep(0.2)
        return self._summary(range(first, first + count), elapsed, failed, lag * 1000)


async def _serve(connection: Connection, token: str, secret: str) -> None:
    side = LoadSide(token, secret)
    connection.send(await side.api.start())
    while (order := await asyncio.to_thread(connection.recv)) is not None:
        kind = order.pop("kind")
        connection.send(await (side.closed_loop(**order) if kind == "closed" else side.open_loop(**order)))
    await side.api.stop()


def serve(connection: Connection, token: str, secret: str) -> None:
    """The child process: report the stand-in's URL, then run each load order sent until None."""
    asyncio.run(_serve(connection, token, secret))
