"""`supportbot bench inference`: batched serving against one-request-at-a-time generate.

N conversations talk at once (closed loop: each sends its next turn when the last reply came
back). A conversation is one of the bundled support chats with its persona; its k-th request
is the history up to its k-th user turn, with the bundled bot replies as history, so every
prompt is fixed in advance and the sequential baseline can run the very same prompts through
plain `model.generate`, batch size 1. The baseline runs on an evenly spread sample of the prompts
(all of them when few) so that a run stays within minutes; throughput is compared per reply.
The batched side serves as the worker does, prefix cache included (emptied after the warm-up,
so a conversation's first turn is always computed whole); the baseline keeps nothing between calls.
Half the baseline runs before the batched phase and half after, so a change in machine load
during the run (other jobs on a shared box) weighs on both sides alike; the load average and
the process CPU time of each side are reported beside the figures. On a shared machine the same
run can move by a third or more from one minute to the next, so `rounds` repeats the whole
comparison and reports the round with the median throughput ratio, beside every round's ratios.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from aiohttp import web
from tqdm import tqdm

from inference.api import ChatMessage, GenerationParams
from inference.client import OpenAIChatClient
from inference.cpu import release_openmp_workers
from inference.engine import Engine, Generated
from inference.host import Host, this_host
from inference.scheduler import DEFAULT_LANES, Scheduler
from inference.server import SCHEDULER, create_app
from inference.synthetic import sample_conversations

Decoding = Literal["greedy", "beam", "model"]
DECODINGS: dict[str, dict[str, Any]] = {
    "greedy": dict(temperature=0.0, num_beams=1, no_repeat_ngram_size=0),
    # BlenderBot's published recipe.
    "beam": dict(temperature=0.0, num_beams=10, min_tokens=20, no_repeat_ngram_size=3),
    "model": {},
}


@dataclass(frozen=True, slots=True)
class Workload:
    conversations: list[list[list[ChatMessage]]]  # conversation -> its requests -> messages

    @property
    def requests(self) -> list[list[ChatMessage]]:
        return [request for conversation in self.conversations for request in conversation]


def build_workload(concurrency: int, turns: int) -> Workload:
    """`concurrency` conversations of `turns` requests each, cycling through the bundled chats.
    Past the last chat a conversation takes another chat's persona, so no two are the same (a
    prefix cache would otherwise answer a repeated conversation for free)."""
    chats = sample_conversations()
    conversations = []
    for index in range(concurrency):
        chat = chats[index % len(chats)]
        lent = chats[(index + index // len(chats)) % len(chats)]
        persona = [ChatMessage("system", line) for line in lent["persona"]]
        history = [ChatMessage("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(chat["turns"])]
        user_turns = [i for i, message in enumerate(history) if message.role == "user"]
        # Later turns carry more history; start so that the last requests end the chat.
        chosen = user_turns[-turns:] if turns <= len(user_turns) else user_turns
        conversations.append([persona + history[: i + 1] for i in chosen])
    return Workload(conversations)


@dataclass(frozen=True, slots=True)
class Figures:
    replies: int
    seconds: float
    cpu_seconds: float
    replies_per_s: float
    tokens_per_s: float
    p50_s: float
    p95_s: float
    mean_prompt_tokens: float
    mean_completion_tokens: float


def figures(
    latencies: Sequence[float], seconds: float, cpu: float, prompt_tokens: Sequence[int], tokens: Sequence[int]
) -> Figures:
    ordered = sorted(latencies)
    return Figures(
        replies=len(ordered),
        seconds=round(seconds, 3),
        cpu_seconds=round(cpu, 2),
        replies_per_s=round(len(ordered) / seconds, 3),
        tokens_per_s=round(sum(tokens) / seconds, 2),
        p50_s=round(statistics.median(ordered), 3),
        p95_s=round(_percentile(ordered, 0.95), 3),
        mean_prompt_tokens=round(statistics.fmean(prompt_tokens), 1),
        mean_completion_tokens=round(statistics.fmean(tokens), 1),
    )


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


Ask = Callable[[list[ChatMessage]], Awaitable[tuple[str, int, int]]]  # -> text, prompt tokens, reply tokens


@asynccontextmanager
async def serving(
    engine: Engine, params: GenerationParams, via: Literal["http", "inprocess"], **scheduler_options: Any
) -> AsyncIterator[tuple[Ask, Scheduler]]:
    """A way to ask for replies: the worker's HTTP API on a local port, or the scheduler itself."""
    if via == "inprocess":
        scheduler = Scheduler(engine, **scheduler_options)

        async def ask_scheduler(messages: list[ChatMessage]) -> tuple[str, int, int]:
            result = await scheduler.generate(engine.prompt_ids(messages), params)
            return result.text, result.prompt_tokens, result.completion_tokens

        try:
            yield ask_scheduler, scheduler
        finally:
            await scheduler.aclose()
        return
    app = create_app(engine, model_name="bench", **scheduler_options)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    client = OpenAIChatClient(f"http://127.0.0.1:{runner.addresses[0][1]}", model="bench", timeout=3600, retries=0)

    async def ask_worker(messages: list[ChatMessage]) -> tuple[str, int, int]:
        completion = await client.complete(messages, params)
        return completion.text, completion.prompt_tokens, completion.completion_tokens

    try:
        yield ask_worker, app[SCHEDULER]
    finally:
        await client.aclose()
        await runner.cleanup()


async def run_batched(
    engine: Engine,
    workload: Workload,
    params: GenerationParams,
    *,
    via: Literal["http", "inprocess"],
    max_batch_size: int,
    max_wait_ms: float,
    max_beam_rows: int | None,
    lanes: int | None,
) -> tuple[Figures, dict[int, str], float]:
    """Drive the conversations concurrently; return figures, reply text by request index, mean batch size."""
    texts: dict[int, str] = {}
    latencies: list[float] = []
    prompt_tokens: list[int] = []
    tokens: list[int] = []
    total = len(workload.requests)
    offsets = [sum(len(c) for c in workload.conversations[:i]) for i in range(len(workload.conversations))]
    options = dict(
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max(256, total),
        max_beam_rows=max_beam_rows,
        lanes=lanes,
    )
    async with serving(engine, params, via, **options) as (ask, scheduler):
        await ask(workload.requests[0])  # warm-up, not timed
        if engine.prefix_cache is not None:
            engine.prefix_cache.clear()  # nothing measured is answered from the warm-up
        batches, requests = scheduler.batches, scheduler.batched_requests
        progress = tqdm(total=total, desc="batched", unit="reply", leave=False)

        async def converse(index: int) -> None:
            for turn, messages in enumerate(workload.conversations[index]):
                started = time.perf_counter()
                text, prompt_n, completion_n = await ask(messages)
                latencies.append(time.perf_counter() - started)
                texts[offsets[index] + turn] = text
                prompt_tokens.append(prompt_n)
                tokens.append(completion_n)
                progress.update()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(converse(i) for i in range(len(workload.conversations))))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        progress.close()
        # rows per decoding step (or per generate call, for static batches)
        mean_batch = (scheduler.batched_requests - requests) / max(1, scheduler.batches - batches)
    return figures(latencies, elapsed, cpu, prompt_tokens, tokens), texts, mean_batch


def baseline_sample(workload: Workload, sample: int) -> list[int]:
    """Indices of a sample of the requests (all of them when `sample` is 0 or covers them) spread
    over the conversations and, in pairs, over their turns: later turns carry longer prompts, and
    the baseline runs its even and odd picks at different times, so each half holds every turn."""
    total = len(workload.requests)
    if not sample or sample >= total:
        return list(range(total))
    conversations = workload.conversations
    offsets = [sum(len(c) for c in conversations[:i]) for i in range(len(conversations))]
    picks = []
    for k in range(sample):
        conversation = k * len(conversations) // sample
        picks.append(offsets[conversation] + (k // 2) % len(conversations[conversation]))
    return picks


@dataclass
class Sequential:
    """One-at-a-time `model.generate` results, gathered in parts."""

    results: dict[int, Generated]
    latencies: list[float]
    cpu: float = 0.0

    def figures(self) -> Figures:
        done = list(self.results.values())
        return figures(
            self.latencies,
            sum(self.latencies),
            self.cpu,
            [r.prompt_tokens for r in done],
            [r.completion_tokens for r in done],
        )


def run_sequential(
    engine: Engine, workload: Workload, params: GenerationParams, indices: Sequence[int], into: Sequential
) -> None:
    """Plain `model.generate`, batch size 1, on the chosen requests (after one untimed warm-up)."""
    prompts = {i: engine.prompt_ids(workload.requests[i]) for i in indices}
    if not prompts:
        return
    warm = next(iter(prompts.values()))
    engine.generate_plain(warm, *engine.request(params, len(warm)))
    for i in tqdm(indices, desc="sequential", unit="reply", leave=False):
        started, cpu = time.perf_counter(), time.process_time()
        into.results[i] = engine.generate_plain(prompts[i], *engine.request(params, len(prompts[i])), seed=params.seed)
        into.latencies.append(time.perf_counter() - started)
        into.cpu += time.process_time() - cpu
    release_openmp_workers()  # as in a worker, whose main thread does not run the model


def run_continuous(engine: Engine, workload: Workload, params: GenerationParams) -> Figures:
    """transformers' continuous batching on every prompt at once (its best case: no arrivals to wait for)."""
    prompts = [engine.prompt_ids(r) for r in workload.requests]
    config, limit = engine.request(params, max(len(p) for p in prompts))
    engine.model.generate_batch(prompts[:1], generation_config=config)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    outputs = engine.model.generate_batch(prompts, generation_config=config)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    tokens = [len(o.generated_tokens) for o in outputs.values()]
    return figures([elapsed] * len(prompts), elapsed, cpu, [len(p) for p in prompts], tokens)


def bench(engine: Engine, *, rounds: int = 1, **options: Any) -> dict[str, Any]:
    """`rounds` full comparisons (see `compare` for the options); returns everything the command
    prints: the report of the round with the median throughput ratio, and every round's figures."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    reports = sorted((compare(engine, **options) for _ in range(rounds)), key=lambda r: r["throughput_ratio"])
    median = reports[len(reports) // 2]
    median["rounds"] = [
        {
            "throughput_ratio": r["throughput_ratio"],
            "p95_over_lone_p50": r["p95_over_lone_p50"],
            "batched_replies_per_s": r["batched"]["replies_per_s"],
            "sequential_replies_per_s": r["sequential"]["replies_per_s"],
            "agreement": r["agreement"],
        }
        for r in reports
    ]
    return median


def compare(
    engine: Engine,
    *,
    concurrency: int,
    turns: int,
    max_tokens: int,
    decoding: Decoding,
    via: Literal["http", "inprocess"],
    sample: int,
    max_batch_size: int,
    max_wait_ms: float,
    max_beam_rows: int | None,
    continuous: bool,
    lanes: int | None = None,
) -> dict[str, Any]:
    """One full comparison: the baseline's first half, the batched phase, the baseline's second half."""
    load_before = os.getloadavg()
    workload = build_workload(concurrency, turns)
    params = GenerationParams(max_tokens=max_tokens, **DECODINGS[decoding])
    chosen = baseline_sample(workload, sample)
    alone = Sequential({}, [])
    run_sequential(engine, workload, params, chosen[::2], alone)
    cache = engine.prefix_cache
    looked_up, hits = (cache.looked_up, cache.hits) if cache is not None else (0, 0)
    batched, texts, mean_batch = asyncio.run(
        run_batched(
            engine,
            workload,
            params,
            via=via,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_beam_rows=max_beam_rows,
            lanes=lanes,
        )
    )
    run_sequential(engine, workload, params, chosen[1::2], alone)
    sequential = alone.figures()
    compared = [i for i in alone.results if i in texts]
    agreement = sum(texts[i] == alone.results[i].text for i in compared) / len(compared)
    report: dict[str, Any] = {
        "model": engine.name,
        "family": engine.family,
        "device": str(engine.device),
        "dtype": str(engine.model.dtype),
        "decoding": decoding,
        "via": via,
        "concurrency": concurrency,
        "requests": len(workload.requests),
        "max_tokens": max_tokens,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "batched": asdict(batched),
        "sequential": asdict(sequential),
        "throughput_ratio": round(batched.replies_per_s / sequential.replies_per_s, 2),
        "cpu_ratio": round((sequential.cpu_seconds / sequential.replies) / (batched.cpu_seconds / batched.replies), 2),
        "p95_over_lone_p50": round(batched.p95_s / sequential.p50_s, 2),
        "agreement": round(agreement, 3),
        "agreement_compared": len(compared),
        "mean_batch_size": round(mean_batch, 2),
        "prefix_cache_hit_rate": (
            round((cache.hits - hits) / max(1, cache.looked_up - looked_up), 3) if cache is not None else None
        ),
        "threads": torch.get_num_threads(),
        "lanes": lanes or DEFAULT_LANES,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "host": asdict(this_host()),
    }
    if continuous:
        if engine.family != "causal":
            report["continuous_batching"] = "not available for encoder-decoder models"
        else:
            report["continuous_batching"] = asdict(run_continuous(engine, workload, params))
    return report


def render(report: dict[str, Any]) -> str:
    """The human-readable table."""
    b, s, r = report["batched"], report["sequential"], report
    lines = [
        f"model {r['model']} ({r['family']}, {r['dtype']}, {r['device']}), decoding {r['decoding']},"
        f" {r['concurrency']} concurrent conversations, {r['requests']} requests via {r['via']},"
        f" max_tokens {r['max_tokens']}",
        f"{'':12}{'replies/s':>10}{'tokens/s':>10}{'p50 s':>8}{'p95 s':>8}{'replies':>9}{'prompt tok':>11}"
        f"{'reply tok':>10}",
    ]
    for name, f in (("batched", b), ("sequential", s)):
        lines.append(
            f"{name:12}{f['replies_per_s']:>10.2f}{f['tokens_per_s']:>10.1f}{f['p50_s']:>8.2f}{f['p95_s']:>8.2f}"
            f"{f['replies']:>9}{f['mean_prompt_tokens']:>11.1f}{f['mean_completion_tokens']:>10.1f}"
        )
    cb = r.get("continuous_batching")
    if isinstance(cb, dict):
        lines.append(
            f"{'continuous':12}{cb['replies_per_s']:>10.2f}{cb['tokens_per_s']:>10.1f}"
            f"   x{cb['replies_per_s'] / s['replies_per_s']:.2f} of sequential (transformers generate_batch,"
            " all prompts at once)"
        )
    elif cb:
        lines.append(f"continuous batching: {cb}")
    lines.append(
        f"throughput x{r['throughput_ratio']} of sequential; batched p95 = {r['p95_over_lone_p50']} x lone p50;"
        f" {r['lanes']} lanes, mean rows per step {r['mean_batch_size']};"
        f" batched==alone on {r['agreement']:.0%} of {r['agreement_compared']}"
    )
    if r["prefix_cache_hit_rate"] is not None:
        lines.append(
            f"prompt tokens answered from the prefix cache (batched side only): {r['prefix_cache_hit_rate']:.0%}"
        )
    lines.append(
        f"{r['threads']} torch threads; process CPU seconds per reply: sequential/batched = x{r['cpu_ratio']};"
        f" load average before {r['load_before']} after {r['load_after']} on {r['cpu_count']} CPUs"
    )
    rounds = r.get("rounds", [])
    if len(rounds) > 1:
        ratios = ", ".join(f"x{x['throughput_ratio']}" for x in rounds)
        tails = ", ".join(str(x["p95_over_lone_p50"]) for x in rounds)
        lines.append(f"{len(rounds)} rounds, the table is the median one: throughput {ratios}; p95 / lone p50 {tails}")
    lines.append(f"host: {Host(**r['host']).describe()}")
    return "\n".join(lines)
