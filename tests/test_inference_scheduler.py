"""Batching: rows join and leave a running batch between steps, static batches for beam search,
what comes back, queue limits, dropped callers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import torch

from inference.api import ChatMessage, GenerationParams
from inference.engine import Generated
from inference.metrics import WorkerMetrics
from inference.scheduler import Overloaded, Scheduler, SchedulerClosed
from tests.inference_fixtures import Gate, tiny_engines, tiny_model_dirs  # noqa: F401

GREEDY = GenerationParams(temperature=0, num_beams=1, min_tokens=6, max_tokens=10)
LONG = GenerationParams(temperature=0, num_beams=1, min_tokens=40, max_tokens=40)
CHATS = [[ChatMessage("user", "hello " * i + "my dog died")] for i in range(1, 7)]


@asynccontextmanager
async def engine_held(scheduler: Scheduler, prompt: list[int]) -> AsyncIterator[tuple[Gate, asyncio.Task]]:
    """One request occupies the engine (its generate call held) while the test fills the queue."""
    with Gate(scheduler.engine) as gate:
        running = asyncio.create_task(scheduler.generate(prompt, GREEDY))
        await asyncio.to_thread(gate.entered.wait, 10)
        yield gate, running


@pytest.fixture
def causal(tiny_engines):  # noqa: F811
    return tiny_engines["causal"]


@pytest.fixture(params=["causal", "seq2seq"])
def engine(request, tiny_engines):  # noqa: F811
    return tiny_engines[request.param]


def alone(engine, prompt: list[int], params: GenerationParams) -> list[int]:
    """The reply's token ids from one static generate call with nothing else in it."""
    config, limit = engine.request(params, len(prompt))
    return engine.generate([prompt], config, [limit])[0].token_ids


async def test_concurrent_requests_share_every_step_and_match_alone(causal):
    metrics = WorkerMetrics("tiny")
    scheduler = Scheduler(causal, lanes=1, max_batch_size=8, max_wait_ms=50, metrics=metrics)
    prompts = [causal.prompt_ids(chat) for chat in CHATS]
    streamed: list[int] = []
    results = await asyncio.gather(
        *(scheduler.generate(p, GREEDY, on_token=streamed.append if i == 0 else None) for i, p in enumerate(prompts))
    )
    await scheduler.aclose()
    assert scheduler.batches == 10 and scheduler.batched_requests == 10 * len(prompts)  # 10 steps of all six
    assert [r.token_ids for r in results] == [alone(causal, p, GREEDY) for p in prompts]
    assert streamed == results[0].token_ids  # the stream carries exactly the reply's tokens
    text = metrics.exposition().decode()
    assert 'vllm:batch_size_sum{model_name="tiny"} 60.0' in text
    assert (
        f'vllm:generation_tokens_total{{model_name="tiny"}} {float(sum(r.completion_tokens for r in results))}' in text
    )
    assert 'vllm:time_to_first_token_seconds_count{model_name="tiny"} 6.0' in text


async def test_two_lanes_share_many_requests_and_still_match_alone(engine):
    scheduler = Scheduler(engine, lanes=2, max_batch_size=16, max_wait_ms=50)
    prompts = [engine.prompt_ids(chat) for chat in CHATS * 3]  # 18 requests
    results = await asyncio.gather(*(scheduler.generate(p, GREEDY) for p in prompts))
    await scheduler.aclose()
    assert [r.token_ids for r in results] == [alone(engine, p, GREEDY) for p in prompts]
    # one lane would carry 16 rows a step; two split them nine and nine
    assert scheduler.batched_requests == 10 * len(prompts) and scheduler.batches >= 20


async def test_newcomers_go_to_the_idle_lane_too(causal):
    scheduler = Scheduler(causal, lanes=2, max_batch_size=16, max_wait_ms=50)
    first = asyncio.create_task(scheduler.generate(causal.prompt_ids(CHATS[0]), LONG))
    while not scheduler.running:  # the first request is stepping in one lane
        await asyncio.sleep(0.001)
    prompts = [causal.prompt_ids(chat) for chat in CHATS[1:4]]
    results = await asyncio.gather(*(scheduler.generate(p, GREEDY) for p in prompts))
    await first
    await scheduler.aclose()
    assert [r.token_ids for r in results] == [alone(causal, p, GREEDY) for p in prompts]
    assert scheduler.batches > 40  # the idle lane took some: LONG's 40 steps did not carry them all


def test_lanes_split_the_threads_evenly(causal):
    threads = torch.get_num_threads()
    assert (Scheduler(causal).lanes, Scheduler(causal).lane_threads) == (1, threads)
    assert Scheduler(causal, lanes=2).lane_threads == max(1, threads // 2)


async def test_a_seeded_reply_is_the_same_whatever_samples_in_the_other_lane(causal):
    prompt = causal.prompt_ids(CHATS[0])
    seeded = GenerationParams(temperature=0.9, top_k=50, seed=7, min_tokens=10, max_tokens=10)
    unseeded = GenerationParams(temperature=0.9, top_k=50, min_tokens=40, max_tokens=40)
    scheduler = Scheduler(causal, lanes=2, max_batch_size=8, max_wait_ms=0)
    reference = await scheduler.generate(prompt, seeded)
    others = [asyncio.create_task(scheduler.generate(p, unseeded)) for p in (prompt, prompt)]
    await asyncio.sleep(0.01)  # the sampled rows are stepping in one lane; the seeded one runs in the other
    beside = [await scheduler.generate(prompt, seeded) for _ in range(3)]
    await asyncio.gather(*others)
    await scheduler.aclose()
    assert all(r.token_ids == reference.token_ids for r in beside)


async def test_different_beam_settings_never_share_a_batch(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=8, max_wait_ms=50)
    prompt = causal.prompt_ids(CHATS[0])
    three, two = (GenerationParams(temperature=0, num_beams=n, max_tokens=6) for n in (3, 2))
    await asyncio.gather(scheduler.generate(prompt, three), scheduler.generate(prompt, two))
    await asyncio.gather(scheduler.generate(prompt, three), scheduler.generate(prompt, three))
    await scheduler.aclose()
    assert (scheduler.batches, scheduler.batched_requests) == (3, 4)


async def test_greedy_and_sampled_rows_share_steps(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=8, max_wait_ms=50)
    prompt = causal.prompt_ids(CHATS[0])
    sampled = GenerationParams(temperature=0.8, top_k=20, min_tokens=10, max_tokens=10)
    greedy, _ = await asyncio.gather(scheduler.generate(prompt, GREEDY), scheduler.generate(prompt, sampled))
    await scheduler.aclose()
    assert (scheduler.batches, scheduler.batched_requests) == (10, 20)
    assert greedy.token_ids == alone(causal, prompt, GREEDY)


async def test_beam_batches_are_capped_in_hypotheses(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=8, max_wait_ms=50, max_beam_rows=6)
    prompt = causal.prompt_ids(CHATS[0])
    beam = GenerationParams(temperature=0, num_beams=3, max_tokens=4)
    await asyncio.gather(*(scheduler.generate(prompt, beam) for _ in range(4)))
    await scheduler.aclose()
    assert (scheduler.batches, scheduler.batched_requests) == (2, 4)


async def test_finished_row_leaves_the_batch_at_once(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=8, max_wait_ms=50)
    prompt = causal.prompt_ids(CHATS[0])
    short, long = await asyncio.gather(
        scheduler.generate(prompt, GenerationParams(temperature=0, min_tokens=3, max_tokens=3)),
        scheduler.generate(prompt, GenerationParams(temperature=0, min_tokens=9, max_tokens=9)),
    )
    await scheduler.aclose()
    assert short.completion_tokens == 3 and short.finish_reason == "length"
    assert long.token_ids[:3] == short.token_ids and long.completion_tokens == 9
    assert (scheduler.batches, scheduler.batched_requests) == (9, 3 + 9)  # the short row ran 3 steps, not 9


async def test_request_joining_a_running_batch_matches_alone(engine):
    scheduler = Scheduler(engine, lanes=1, max_batch_size=8, max_wait_ms=0)
    first, second = engine.prompt_ids(CHATS[5]), engine.prompt_ids(CHATS[1])
    halfway = asyncio.Event()

    def count(token: int) -> None:
        if scheduler.batches >= 4:
            halfway.set()

    running = asyncio.create_task(scheduler.generate(first, LONG, on_token=count))
    await halfway.wait()
    joined = await scheduler.generate(second, GREEDY)
    # every step of the second request also stepped the first: two rows in those steps
    assert scheduler.batched_requests - scheduler.batches == joined.completion_tokens
    assert (await running).token_ids == alone(engine, first, LONG)
    await scheduler.aclose()
    assert joined.token_ids == alone(engine, second, GREEDY)
    assert (await running).completion_tokens == 40


async def test_cancelled_request_leaves_the_running_batch(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=8, max_wait_ms=0)
    prompt = causal.prompt_ids(CHATS[0])
    started = asyncio.Event()
    gone = asyncio.create_task(scheduler.generate(prompt, LONG, on_token=lambda _: started.set()))
    await started.wait()
    gone.cancel()
    other = await scheduler.generate(prompt, GREEDY)
    await scheduler.aclose()
    assert other.completion_tokens == 10
    assert scheduler.batches < 40 and scheduler.running == 0  # the abandoned row stopped decoding


async def test_cancelled_request_stops_its_generate_call(causal, monkeypatch):
    """Seeded sampling runs as one `generate` call of its own; a caller who goes stops it too."""
    made: list[Generated] = []
    generate = causal.generate
    monkeypatch.setattr(causal, "generate", lambda *a, **k: made.extend(generate(*a, **k)) or made)
    forward = causal.model.forward
    monkeypatch.setattr(causal.model, "forward", lambda *a, **k: time.sleep(0.005) or forward(*a, **k))  # >= 0.2 s
    scheduler = Scheduler(causal, lanes=1, max_batch_size=8, max_wait_ms=0)
    started = asyncio.Event()
    seeded = GenerationParams(temperature=1.0, seed=3, min_tokens=40, max_tokens=40)
    gone = asyncio.create_task(
        scheduler.generate(causal.prompt_ids(CHATS[0]), seeded, on_token=lambda _: started.set())
    )
    await started.wait()
    gone.cancel()
    await scheduler.aclose()
    assert len(made) == 1 and made[0].completion_tokens < 20  # stopped, not run to its 40 tokens


async def test_seeded_sampling_is_reproducible_under_load(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=8, max_wait_ms=50)
    prompt = causal.prompt_ids(CHATS[2])
    seeded = GenerationParams(temperature=1.0, seed=11, min_tokens=8, max_tokens=8)
    alone = await scheduler.generate(prompt, seeded)
    crowd = [scheduler.generate(causal.prompt_ids(c), GenerationParams(temperature=1.0, max_tokens=8)) for c in CHATS]
    again, *_ = await asyncio.gather(scheduler.generate(prompt, seeded), *crowd)
    await scheduler.aclose()
    assert again.token_ids == alone.token_ids


async def test_full_queue_is_refused_with_a_retry_hint(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=1, max_wait_ms=0, max_queue=2)
    prompt = causal.prompt_ids(CHATS[0])
    async with engine_held(scheduler, prompt) as (gate, running):
        queued = [asyncio.create_task(scheduler.generate(prompt, GREEDY)) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert scheduler.waiting == 2
        with pytest.raises(Overloaded) as refused:
            await scheduler.generate(prompt, GREEDY)
        assert refused.value.retry_after >= 1
        gate.opened.set()
        await asyncio.gather(running, *queued)
    await scheduler.aclose()


async def test_cancelled_caller_leaves_the_queue(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=1, max_wait_ms=0)
    prompt = causal.prompt_ids(CHATS[0])
    async with engine_held(scheduler, prompt) as (gate, running):
        gone = asyncio.create_task(scheduler.generate(prompt, GREEDY))
        await asyncio.sleep(0.01)
        assert scheduler.waiting == 1
        gone.cancel()
        await asyncio.sleep(0.01)
        assert scheduler.waiting == 0
        gate.opened.set()
        steps = (await running).completion_tokens
    await scheduler.aclose()
    assert scheduler.batched_requests == steps  # only the running request's steps: the cancelled one never ran


async def test_closing_fails_queued_requests_and_refuses_new_ones(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=1, max_wait_ms=0)
    prompt = causal.prompt_ids(CHATS[0])
    async with engine_held(scheduler, prompt) as (gate, running):
        queued = asyncio.create_task(scheduler.generate(prompt, GREEDY))
        await asyncio.sleep(0.01)
        closing = asyncio.create_task(scheduler.aclose())
        await asyncio.sleep(0.01)
        gate.opened.set()
        await closing
    with pytest.raises(SchedulerClosed):
        await queued
    assert (await running).completion_tokens > 0  # the batch already running finishes
    with pytest.raises(SchedulerClosed):
        await scheduler.generate(prompt, GREEDY)


async def test_failed_batch_fails_its_requests_not_the_scheduler(causal):
    scheduler = Scheduler(causal, lanes=1, max_batch_size=4, max_wait_ms=0)
    prompt = causal.prompt_ids(CHATS[0])
    with pytest.raises(IndexError):  # a token id outside the vocabulary breaks the embedding lookup
        await scheduler.generate([causal.model.config.vocab_size + 5], GREEDY)
    assert (await scheduler.generate(prompt, GREEDY)).completion_tokens > 0
    await scheduler.aclose()
