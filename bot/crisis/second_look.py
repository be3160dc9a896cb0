"""The slow learned components, kept off the turn's critical path: a bounded queue, riskiest first.

The embedding model reads meaning the rules and the n-gram model miss, but one check costs ~15 ms
of CPU here, so one worker checks about 60 messages a second. Asked inside every turn, a burst
above that made every reply wait behind the queue, crisis replies caught by the rules included
(`bench bot`: p99 13 s at 100 messages/s, and growing). Here each check is queued with a priority
(the quick components' risk score) and runs in worker processes at a lower CPU priority (a thread
would share the event loop's GIL: measured, it slowed the turns and was itself starved), and the
turn waits for it only briefly (see `Dialogue`): a verdict that comes later still reaches the
dialogue, which then sends the safe reply and alerts operators. When more than `max_pending` checks
wait, the least suspicious one is dropped, counted in
`supportbot_crisis_second_looks_total{result="dropped"}`; that message keeps the rules' and the
n-gram model's verdict.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from threadpoolctl import threadpool_limits

from bot import metrics
from bot.crisis.learned import Component, ask
from bot.crisis.levels import Assessment, Level

log = logging.getLogger(__name__)


NICENESS = 10  # the checks take the CPU the turns leave: replies first, a late check still acts
_components: tuple[Component, ...] = ()  # in a worker process: what it checks with


def _start_worker(components: tuple[Component, ...]) -> None:
    global _components
    _components = components
    # One BLAS thread. numpy's OpenBLAS started a helper thread when it was imported (unpickling the components
    # imports it), before the nice below, which Linux applies per thread: after every check's small matrix
    # products it spun on the other core at full priority, taking half of each check's CPU and slowing what
    # else ran there (PostgreSQL's commits beside a busy worker: 0.2 -> 2 ms).
    threadpool_limits(limits=1, user_api="blas")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # and for one loaded later
    with contextlib.suppress(AttributeError, OSError):  # os.nice is POSIX only
        os.nice(NICENESS)


def _check(text: str, recent: tuple[str, ...], level: Level) -> Assessment | None:
    """In a worker: the first slow component that raises the level, if any."""
    for component in _components:
        found = ask(component, text, recent, level)
        if found is not None and found.level > level:
            return found
    return None


@dataclass(order=True)
class _Check:
    key: tuple[float, int]  # (-priority, arrival): the queue's first is the riskiest, oldest first
    text: str = field(compare=False)
    recent: tuple[str, ...] = field(compare=False)
    quick: Assessment = field(compare=False)
    verdict: asyncio.Future[Assessment | None] = field(compare=False)


class SecondLook:
    """Runs slow components in worker processes, most suspicious message first; bounded.
    The components are pickled to the workers (started on the first check)."""

    def __init__(self, components: Sequence[Component], *, workers: int = 1, max_pending: int = 500) -> None:
        if workers < 1 or max_pending < 1:
            raise ValueError("a second look needs at least one worker and room for one waiting check")
        self.components = tuple(components)
        self.workers = workers
        self.max_pending = max_pending
        self._waiting: list[_Check] = []
        self._running = 0
        self._arrivals = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ProcessPoolExecutor | None = None  # started by the first check, again after close()

    @property
    def busy(self) -> bool:
        """True when a new check would have to wait (then its priority matters)."""
        return self._running >= self.workers

    @property
    def pending(self) -> int:
        return len(self._waiting) + self._running

    def ask(
        self, text: str, recent: Sequence[str], quick: Assessment, priority: float
    ) -> asyncio.Future[Assessment | None]:
        """Queue a check of `text`, whose quick verdict is `quick`; the future gives that verdict raised by
        the components', or None for nothing to add, a failure, or a check dropped for a riskier one."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests run several): the old one's checks are gone
            self._loop, self._waiting, self._running = loop, [], 0
        verdict: asyncio.Future[Assessment | None] = loop.create_future()
        bisect.insort(self._waiting, _Check((-priority, next(self._arrivals)), text, tuple(recent), quick, verdict))
        if len(self._waiting) > self.max_pending:
            least = self._waiting.pop()  # lowest priority, newest among equals
            metrics.SECOND_LOOKS.labels("dropped").inc()
            least.verdict.set_result(None)
        self._start_next()
        return verdict

    def close(self) -> None:
        """Drop the waiting checks and stop the workers (a running check is abandoned); a later check
        starts new ones, so a layer shared by several services may be closed by each."""
        for check in self._waiting:
            check.verdict.cancel()
        self._waiting.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")  # not fork: the bot process runs threads
        return ProcessPoolExecutor(self.workers, context, initializer=_start_worker, initargs=(self.components,))

    def _start_next(self) -> None:
        while self._waiting and self._running < self.workers:
            check = self._waiting.pop(0)
            if check.verdict.done():  # the asker gave up (cancelled)
                continue
            if self._executor is None:
                self._executor = self._new_executor()
            self._running += 1
            try:
                running = self._loop.run_in_executor(  # type: ignore[union-attr]  # set by the first ask
                    self._executor, _check, check.text, check.recent, check.quick.level
                )
            except BrokenProcessPool:  # a worker died (killed, out of memory): new workers take this check
                self._executor = None
                self._running -= 1
                self._waiting.insert(0, check)
                continue
            running.add_done_callback(lambda done, check=check: self._finished(check, done))
        metrics.SECOND_LOOK_PENDING.set(self.pending)

    def _finished(self, check: _Check, done: asyncio.Future[Assessment | None]) -> None:
        self._running -= 1
        metrics.SECOND_LOOKS.labels("checked").inc()
        if not done.cancelled() and isinstance(done.exception(), BrokenProcessPool):
            log.error("a crisis second-look worker died; new workers will take the next checks")
            self._executor = None
        if not check.verdict.done():
            if done.cancelled() or done.exception() is not None:
                check.verdict.set_result(None)  # `ask` caught the components' errors; this is the worker's
            else:
                found = done.result()
                check.verdict.set_result(None if found is None else check.quick.raised_by(found))
        self._start_next()
