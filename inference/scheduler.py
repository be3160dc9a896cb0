"""Dynamic batching: requests that arrive together share one `generate` call.

One asyncio task forms batches, one worker thread runs them, so the event loop keeps answering
HTTP while the model works. A batch starts when `max_batch_size` compatible requests are queued
or when the oldest has waited `max_wait_ms`; requests that arrive while a batch runs form the
next one. Only requests with the same decoding settings share a batch (see
`generation.batch_key`). A request whose caller gives up (client disconnected, timeout) is
dropped from the queue. When the queue is full new requests are refused with `Overloaded`.
Beam search batches are also capped in hypotheses (`max_beam_rows`): it copies its whole
key/value cache every step to follow its beams, and on CPU a batch of more than about 40
hypotheses outgrows the processor cache and gets slower per request than running alone.

Transformers' continuous batching (`generate_batch`, `ContinuousBatchingManager`) was measured
against this on CPU and lost (see `bench inference --continuous-batching`: given all 64 prompts
of 32 conversations at once it served 2.6x the one-at-a-time baseline where this served 5.8x),
so it is not used here; it also does not cover encoder-decoder models.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from transformers import GenerationConfig

from inference.api import GenerationParams
from inference.engine import Engine, Generated
from inference.generation import batch_key
from inference.metrics import WorkerMetrics

log = logging.getLogger(__name__)

TokenSink = Callable[[int], None]  # receives each generated token id, on the event loop
CPU_BEAM_ROWS = 40


class Overloaded(Exception):
    """The queue is full; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the inference queue is full; retry after {retry_after}s")
        self.retry_after = retry_after


class SchedulerClosed(Exception):
    """The scheduler is shutting down and takes no more work."""


@dataclass(eq=False)
class _Job:
    prompt: list[int]
    config: GenerationConfig
    limit: int
    seed: int | None
    key: str | None
    future: asyncio.Future[Generated]
    on_token: TokenSink | None
    arrived: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    streamed: int = 0
    ended: bool = False


class Scheduler:
    """Queues generation requests and runs them in batches on one engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 10.0,
        max_queue: int = 256,
        max_beam_rows: int | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be at least 1")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_beam_rows = max_beam_rows or (CPU_BEAM_ROWS if engine.device.type == "cpu" else None)
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: deque[_Job] = deque()
        self._arrival = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._task: asyncio.Task[None] | None = None
        self._running = 0
        self._batch_seconds = 1.0  # moving average of a batch's duration, for Retry-After
        self._closed = False
        self.batches = 0  # generate calls run, and requests they carried (mean batch size = ratio)
        self.batched_requests = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return self._running

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start forming batches (call from the event loop that will submit work)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="scheduler")

    async def aclose(self) -> None:
        """Refuse new work, fail what is queued, let the running batch finish, stop the thread."""
        self._closed = True
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(SchedulerClosed("the inference worker is shutting down"))
        self._gauge()
        self._arrival.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=False)

    async def generate(
        self, prompt: Sequence[int], params: GenerationParams, on_token: TokenSink | None = None
    ) -> Generated:
        """Queue one prompt and wait for its reply; cancelling the wait drops it from the queue."""
        if self._closed:
            raise SchedulerClosed("the inference worker is shutting down")
        if len(self._queue) >= self.max_queue:
            raise Overloaded(self.retry_after())
        self.start()
        config, limit = self.engine.request(params, len(prompt))
        job = _Job(
            list(prompt),
            config,
            limit,
            params.seed,
            batch_key(config, params.seed),
            asyncio.get_running_loop().create_future(),
            on_token,
        )
        self._queue.append(job)
        self._gauge()
        self._arrival.set()
        try:
            return await job.future
        finally:
            if not job.future.done():  # the caller went away while queued
                job.future.cancel()
            if job in self._queue:
                self._queue.remove(job)
                self._gauge()

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained by one batch's worth."""
        batches = len(self._queue) / self.max_batch_size + 1
        return max(1, math.ceil(batches * self._batch_seconds))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._queue:
                self._arrival.clear()
                await self._arrival.wait()
                continue
            batch = await self._collect()
            if not batch:
                continue
            started = time.perf_counter()
            self.batches += 1
            self.batched_requests += len(batch)
            self._running = len(batch)
            self._gauge()
            if self.metrics:
                self.metrics.batch_size.observe(len(batch))
                for job in batch:
                    self.metrics.queue_time.observe(started - job.arrived)
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch, loop)
            except Exception as exc:  # a failed batch fails its requests, not the worker
                log.exception("generation failed for a batch of %d", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
            else:
                for job, result in zip(batch, results, strict=True):
                    self._record(job, result)
                    if not job.future.done():
                        job.future.set_result(result)
            finally:
                self._running = 0
                self._gauge()
                self._batch_seconds = 0.7 * self._batch_seconds + 0.3 * (time.perf_counter() - started)

    async def _collect(self) -> list[_Job]:
        """Wait until the head request's batch is full or its wait is up, then take the batch."""
        while self._queue:
            head = self._queue[0]
            if head.future.done():
                self._queue.popleft()
                continue
            remaining = head.arrived + self.max_wait - time.perf_counter()
            if remaining <= 0 or len(self._compatible(head)) >= self._batch_limit(head):
                break
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                pass
        if not self._queue:
            return []
        head = self._queue[0]
        batch = self._compatible(head)[: self._batch_limit(head)]
        for job in batch:
            self._queue.remove(job)
        return batch

    def _batch_limit(self, head: _Job) -> int:
        beams = head.config.num_beams or 1
        if beams == 1 or self.max_beam_rows is None:
            return self.max_batch_size
        return max(1, min(self.max_batch_size, self.max_beam_rows // beams))

    def _compatible(self, head: _Job) -> list[_Job]:
        if head.key is None:
            return [head]
        return [job for job in self._queue if job.key == head.key and not job.future.done()]

    def _run(self, batch: list[_Job], loop: asyncio.AbstractEventLoop) -> list[Generated]:
        """In the worker thread: one generate call; token callbacks hop back to the loop."""
        head = batch[0]

        def on_token(row: int, token: int) -> None:
            loop.call_soon_threadsafe(self._token, batch[row], token)

        return self.engine.generate(
            [job.prompt for job in batch],
            head.config,
            [job.limit for job in batch],
            seed=head.seed if head.key is None else None,
            on_token=on_token,
        )

    def _token(self, job: _Job, token: int) -> None:
        """A row keeps receiving (pad) tokens after it ends; only its own reply is passed on."""
        if job.ended:
            return
        if job.first_token is None:
            job.first_token = time.perf_counter()
            if self.metrics:
                self.metrics.time_to_first_token.observe(job.first_token - job.arrived)
        job.streamed += 1
        job.ended = token == self.engine.eos_id or job.streamed >= job.limit
        if job.on_token is not None and token != self.engine.eos_id and not job.future.done():
            job.on_token(token)

    def _record(self, job: _Job, result: Generated) -> None:
        if self.metrics:
            self.metrics.prompt_tokens.inc(result.prompt_tokens)
            self.metrics.generation_tokens.inc(result.completion_tokens)
            self.metrics.finished(result.finish_reason)

    def _gauge(self) -> None:
        if self.metrics:
            self.metrics.waiting.set(len(self._queue))
            self.metrics.running.set(self._running)
