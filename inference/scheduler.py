"""Batching: iteration-level (continuous) where the engine can step, one `generate` call otherwise.

Greedy and sampled requests (on the architectures the engine steps, see `Engine.steppable`) join
the running batch at the next step boundary, prefilled alone, and leave it the step they finish,
so a request never waits for a batch to end nor a short reply for a long one; any mix of their
decoding settings shares a step. Beam search, seeded sampling (its seed must reproduce it whatever
else runs) and other architectures run as static batches: one `generate` call per batch, formed
when `max_batch_size` compatible requests are queued or the oldest has waited `max_wait_ms` (see
`generation.batch_key`). The queue is served in order: a static request at its head runs in the
first lane without running rows. A request whose caller gives up (client disconnected, timeout)
is dropped from the queue or leaves the batch. When the queue is full new requests are refused
with `Overloaded`. Beam search batches are also
capped in hypotheses (`max_beam_rows`): it copies its whole key/value cache every step to follow
its beams, and on CPU a batch of more than about 40 hypotheses outgrows the processor cache and
gets slower per request than running alone.

Work runs in lanes: each has its own running batch, its own thread that runs the model, and an
asyncio task that decides who is in its batch, so the event loop keeps answering HTTP while the
model works. By default there is one lane, on every torch thread. Several lanes (`lanes`) split
the threads evenly, for good: on 2 cores two one-thread lanes served DialoGPT no faster than one
two-thread lane at 16 and 32 conversations (`bench inference --lanes`), and a lane that took
every thread while the others idled would, when another started, leave three busy threads on two
cores, each parallel region waiting for a descheduled one.

Transformers' continuous batching (`generate_batch`, `ContinuousBatchingManager`) was measured
against static batching on CPU and lost (see `bench inference --continuous-batching`: given all
64 prompts of 32 conversations at once it served 2.6x the one-at-a-time baseline where static
batching served 5.8x), and it does not cover encoder-decoder models; hence our own.
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

import torch
from transformers import GenerationConfig

from inference.api import GenerationParams
from inference.batch import Row, RunningBatch
from inference.engine import Engine, Generated
from inference.generation import batch_key
from inference.metrics import WorkerMetrics

log = logging.getLogger(__name__)

TokenSink = Callable[[int], None]  # receives each generated token id, on the event loop
CPU_BEAM_ROWS = 40
DEFAULT_LANES = 1  # on every torch thread; see the module's docstring for why not more on CPU


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
    steppable: bool
    arrived: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    streamed: int = 0
    ended: bool = False


@dataclass(eq=False)
class _Lane:
    """A running batch and the one thread that runs it; lanes run side by side on one engine."""

    batch: RunningBatch
    executor: ThreadPoolExecutor
    joining: int = 0  # requests handed to the step now running, not yet in the batch
    static_rows: int = 0  # requests of the static batch it is running

    @property
    def rows(self) -> int:
        return len(self.batch) + self.joining


class Scheduler:
    """Queues generation requests and runs them in batches on one engine, in one or more lanes."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 10.0,
        max_queue: int = 256,
        max_beam_rows: int | None = None,
        lanes: int | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """`max_batch_size` rows at most per lane; `lanes` by default DEFAULT_LANES."""
        if max_batch_size < 1 or max_queue < 1 or (lanes is not None and lanes < 1):
            raise ValueError("max_batch_size, max_queue and lanes must be at least 1")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_beam_rows = max_beam_rows or (CPU_BEAM_ROWS if engine.device.type == "cpu" else None)
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: deque[_Job] = deque()
        self._arrival = asyncio.Event()
        count = lanes or DEFAULT_LANES
        self._lanes = [
            _Lane(engine.new_batch(max_batch_size), ThreadPoolExecutor(1, thread_name_prefix=f"generate-{i}"))
            for i in range(count)
        ]
        # Each lane's torch threads: an even share, set in its own thread (torch.set_num_threads holds
        # for the calling thread only). A thread's OpenMP workers outlive its work, so lanes that
        # changed their share would leave more workers than cores (see inference.cpu).
        self._threads = max(1, torch.get_num_threads() // count)
        self._tasks: list[asyncio.Task[None]] = []
        self._batch_seconds = 1.0  # moving average of a batch's (or a row's) duration, for Retry-After
        self._closed = False
        self.batches = 0  # generate calls or steps run, and requests they carried (mean batch size = ratio)
        self.batched_requests = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return sum(lane.rows + lane.static_rows for lane in self._lanes)

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    @property
    def lane_threads(self) -> int:
        """Torch threads each lane runs on."""
        return self._threads

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start forming batches (call from the event loop that will submit work)."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._loop(lane), name=f"scheduler-{i}") for i, lane in enumerate(self._lanes)
            ]

    async def aclose(self) -> None:
        """Refuse new work, fail what is queued, let the running rows finish, stop the lanes' threads."""
        self._closed = True
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(SchedulerClosed("the inference worker is shutting down"))
        self._gauge()
        self._arrival.set()
        await asyncio.gather(*self._tasks)
        for lane in self._lanes:
            lane.executor.shutdown(wait=False)

    async def generate(
        self, prompt: Sequence[int], params: GenerationParams, on_token: TokenSink | None = None
    ) -> Generated:
        """Queue one prompt and wait for its reply; cancelling the wait drops it from the queue, or
        from the running batch at the next step boundary."""
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
            self.engine.steppable(config) and not (config.do_sample and params.seed is not None),
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

    async def _loop(self, lane: _Lane) -> None:
        while not self._closed or len(lane.batch):
            joining = self._admit(lane)
            if joining or len(lane.batch):
                await self._step(lane, joining)
            elif self._queue and not self._queue[0].steppable:
                await self._run_static(lane)
            else:  # nothing queued, or what is queued goes to a lane that has few rows
                self._arrival.clear()
                await self._arrival.wait()

    def _admit(self, lane: _Lane) -> list[_Job]:
        """Queued steppable requests that join this lane at its step boundary, in arrival order up to
        a static request (which waits for a lane without running rows) or the lane's share: its part
        of all queued and running requests, at most a full batch. What is left wakes the others."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        share = min(self.max_batch_size, math.ceil((len(self._queue) + self.running) / len(self._lanes)))
        joining: list[_Job] = []
        while self._queue and len(lane.batch) + len(joining) < share and not self._closed:
            head = self._queue[0]
            if head.future.done():
                self._queue.popleft()
            elif head.steppable:
                joining.append(self._queue.popleft())
            else:
                break
        if self._queue:
            self._arrival.set()
        return joining

    async def _step(self, lane: _Lane, joining: list[_Job]) -> None:
        """Newcomers join, one step runs, finished and abandoned rows leave; results go out."""
        started = time.perf_counter()
        if self.metrics:
            for job in joining:
                self.metrics.queue_time.observe(started - job.arrived)
        lane.joining = len(joining)
        self._gauge()
        loop = asyncio.get_running_loop()
        try:
            tokens, failed = await loop.run_in_executor(lane.executor, self._advance, lane.batch, joining)
        except Exception as exc:  # a failed step fails its rows, not the worker
            log.exception("a decoding step failed for %d rows", len(lane.batch))
            for job in [row.tag for row in lane.batch.rows] + joining:
                if not job.future.done():
                    job.future.set_exception(exc)
            lane.batch = self.engine.new_batch(self.max_batch_size)
            self._gauge()
            return
        finally:
            lane.joining = 0
        for job, exc in failed:
            job.future.set_exception(exc)
        if tokens:
            self.batches += 1
            self.batched_requests += len(tokens)
            if self.metrics:
                self.metrics.batch_size.observe(len(tokens))
        for row, token in tokens:
            job = row.tag
            self._token(job, token)
            if row.done and not job.future.done():
                result = self.engine.result(row)
                self._record(job, result)
                job.future.set_result(result)
                self._batch_seconds = 0.9 * self._batch_seconds + 0.1 * (time.perf_counter() - job.arrived)
        self._gauge()

    def _advance(
        self, batch: RunningBatch, joining: list[_Job]
    ) -> tuple[list[tuple[Row, int]], list[tuple[_Job, Exception]]]:
        """In the lane's thread: abandoned rows leave, newcomers are prefilled, one step runs and
        finished rows leave. Returns each stepped row with its token, and newcomers that failed."""
        torch.set_num_threads(self._threads)
        for row in [row for row in batch.rows if row.tag.future.done()]:
            batch.remove(row)
        failed = []
        for job in joining:
            try:
                self.engine.join(batch, job.prompt, job.config, job.limit, tag=job)
            except Exception as exc:  # a bad prompt fails its request alone
                failed.append((job, exc))
        made = self.engine.step(batch) if len(batch) else []
        for row, _ in made:
            if row.done:
                batch.remove(row)
        return made, failed

    async def _run_static(self, lane: _Lane) -> None:
        """One static batch: collect it, run one generate call in the lane, hand out the results."""
        loop = asyncio.get_running_loop()
        batch = await self._collect()
        if not batch:
            return
        started = time.perf_counter()
        self.batches += 1
        self.batched_requests += len(batch)
        lane.static_rows = len(batch)
        self._gauge()
        if self.metrics:
            self.metrics.batch_size.observe(len(batch))
            for job in batch:
                self.metrics.queue_time.observe(started - job.arrived)
        try:
            results = await loop.run_in_executor(lane.executor, self._run, batch, loop)
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
            lane.static_rows = 0
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
        """In the lane's thread: one generate call; token callbacks hop back to the loop."""
        torch.set_num_threads(self._threads)
        head = batch[0]

        def on_token(row: int, token: int) -> None:
            loop.call_soon_threadsafe(self._token, batch[row], token)

        return self.engine.generate(
            [job.prompt for job in batch],
            head.config,
            [job.limit for job in batch],
            seed=head.seed if head.key is None else None,
            on_token=on_token,
            abandoned=lambda row: batch[row].future.done(),  # a flag read across threads: no await needed
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
            self.metrics.running.set(self.running)
