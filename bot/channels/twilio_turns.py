"""Turns that outlast Twilio's patience: run in the background, picked up later.

Twilio gives a webhook 15 seconds, and a caller hears silence meanwhile. A turn not ready after a
short wait keeps running in a task: a call hears a holding phrase and is redirected to a pickup URL;
an SMS reply is sent later through the REST API. The pickup may land on another replica behind the
load balancer, so it also finds the reply in the database by the message's channel message id
(CallSid + utterance number), which the turn stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bot.dialogue import Dialogue, Incoming, TurnResult
from db.engine import DATABASE_ERRORS, Database

_POLL_S = 0.1
KEEP_FINISHED_S = 120.0  # how long a finished turn waits in memory for its pickup


class PendingTurns:
    """Turns keyed by channel message id, shared by the request that starts one and those that pick it up."""

    def __init__(self, dialogue: Dialogue, db: Database) -> None:
        self.dialogue = dialogue
        self.db = db
        self._tasks: dict[str, asyncio.Task[TurnResult]] = {}

    async def answer(self, incoming: Incoming, wait_s: float | None) -> TurnResult | None:
        """Start the turn (or join it, for Twilio's retry of the same request); None if not ready within
        `wait_s` (None: wait for it)."""
        assert incoming.channel_message_id is not None, "spoken turns are keyed by their channel message id"
        task = self._tasks.get(incoming.channel_message_id)
        if task is None:
            task = asyncio.create_task(self.dialogue.handle(incoming))
            self._tasks[incoming.channel_message_id] = task
            task.add_done_callback(lambda _: self._forget_later(incoming.channel_message_id))
        return await _within(task, wait_s)

    async def pickup(self, channel: str, external_id: str, channel_message_id: str, wait_s: float) -> TurnResult | None:
        """The turn's result: from this process's task, else from the database; None if not ready in time."""
        task = self._tasks.get(channel_message_id)
        if task is not None:
            return await _within(task, wait_s)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                result = await self.dialogue.result_of(channel, external_id, channel_message_id)
            except DATABASE_ERRORS:
                result = None
            left = deadline - time.monotonic()
            if result is not None or left <= 0:
                return result
            await asyncio.sleep(min(_POLL_S, left))

    async def aclose(self) -> None:
        """Stop turns still running at shutdown (their messages stay queued and are retried by the lease)."""
        for task in self._tasks.values():
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _forget_later(self, key: str) -> None:
        asyncio.get_running_loop().call_later(KEEP_FINISHED_S, self._tasks.pop, key, None)


async def _within(task: asyncio.Task[TurnResult], wait_s: float | None) -> TurnResult | None:
    done, _ = await asyncio.wait({task}, timeout=wait_s)
    return task.result() if done else None
