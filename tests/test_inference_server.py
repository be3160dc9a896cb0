"""The worker's HTTP API: OpenAI shape, streaming, refusals, overload, disconnects, metrics."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import pytest

from inference.api import ChatMessage, GenerationParams
from inference.schema import Limits
from inference.server import METRICS, SCHEDULER, create_app
from tests.inference_fixtures import Gate, running, tiny_engines, tiny_model_dirs  # noqa: F401

CHAT = [{"role": "system", "content": "I am kind."}, {"role": "user", "content": "my dog died yesterday"}]
GREEDY = {"temperature": 0, "max_tokens": 8}


@pytest.fixture(params=["causal", "seq2seq"])
def engine(request, tiny_engines):  # noqa: F811
    return tiny_engines[request.param]


async def test_openai_client_gets_a_chat_completion(engine):
    async with running(create_app(engine, model_name="tiny")) as base:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        reply = await client.chat.completions.create(model="tiny", messages=CHAT, **GREEDY)
        models = await client.models.list()
        await client.close()
    assert reply.object == "chat.completion" and reply.model == "tiny"
    assert reply.choices[0].message.role == "assistant"
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens == len(engine.prompt_ids(_messages(CHAT)))
    assert 0 < reply.usage.completion_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert [m.id for m in models.data] == ["tiny"]


async def test_reply_is_what_the_engine_generates(engine):
    async with running(create_app(engine, model_name="tiny")) as base, aiohttp.ClientSession() as http:
        async with http.post(base + "/v1/chat/completions", json={"messages": CHAT, **GREEDY}) as response:
            body = await response.json()
    prompt = engine.prompt_ids(_messages(CHAT))
    config, limit = engine.request(GenerationParams(temperature=0, max_tokens=8), len(prompt))
    assert body["choices"][0]["message"]["content"] == engine.generate([prompt], config, [limit])[0].text


async def test_stream_adds_up_to_the_whole_reply(tiny_engines):  # noqa: F811
    engine = tiny_engines["causal"]
    async with running(create_app(engine, model_name="tiny")) as base:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        params = {"temperature": 0, "max_tokens": 10, "extra_body": {"min_tokens": 10}}
        whole = await client.chat.completions.create(model="tiny", messages=CHAT, **params)
        stream = await client.chat.completions.create(
            model="tiny", messages=CHAT, stream=True, stream_options={"include_usage": True}, **params
        )
        chunks = [chunk async for chunk in stream]
        await client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


BAD_REQUESTS = [
    ({"model": "tiny"}, 400, "messages"),
    ({"messages": "hello"}, 400, "messages"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "user"}]}, 400, "messages.0.content"),
    ({"messages": [{"role": "user", "content": 42}]}, 400, "messages.0.content"),
    ({"messages": [{"role": "user", "content": "   "}]}, 400, "messages.0.content"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role"),
    ({"messages": [{"role": "system", "content": "only a persona"}]}, 400, "messages"),
    ({"messages": [{"role": "user", "content": "x" * 3000}]}, 400, "messages.0.content"),
    ({"messages": [{"role": "user", "content": "hi"}] * 11}, 400, "messages"),
    ({"messages": CHAT, "model": "gpt-4"}, 404, "model"),
    ({"messages": CHAT, "max_tokens": -1}, 400, "max_tokens"),
    ({"messages": CHAT, "max_tokens": 100}, 400, "max_tokens"),
    ({"messages": CHAT, "max_tokens": "many"}, 400, "max_tokens"),
    ({"messages": CHAT, "temperature": 5}, 400, "temperature"),
    ({"messages": CHAT, "n": 3}, 400, "n"),
    ({"messages": CHAT, "tools": []}, 400, "tools"),
    ({"messages": CHAT, "num_beams": 2, "stream": True}, 400, "stream"),
    # a wrong JSON type is refused, not converted
    ({"messages": CHAT, "stream": "yes"}, 400, "stream"),
    ({"messages": CHAT, "temperature": "0.5"}, 400, "temperature"),
    ({"messages": CHAT, "max_tokens": True}, 400, "max_tokens"),
    ({"messages": CHAT, "seed": "7"}, 400, "seed"),
    (
        {"messages": CHAT, "stream": True, "stream_options": {"include_usage": True, "extra": 1}},
        400,
        "stream_options.extra",
    ),
]


async def test_bad_requests_get_openai_errors_and_the_worker_keeps_serving(tiny_engines):  # noqa: F811
    limits = Limits(max_messages=10, max_message_chars=2000, max_tokens=64, max_body_bytes=16_000)
    app = create_app(tiny_engines["causal"], model_name="tiny", limits=limits)
    async with running(app) as base, aiohttp.ClientSession() as http:
        url = base + "/v1/chat/completions"
        for payload, status, param in BAD_REQUESTS:
            async with http.post(url, json=payload) as response:
                body = await response.json()
                assert response.status == status, payload
                assert body["error"]["param"] == param, payload
                assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
        for data, content_type, status in [
            (b"{not json", "application/json", 400),
            (b'["a list"]', "application/json", 400),
            (b"messages=hi", "application/x-www-form-urlencoded", 415),
            (b"{" + b" " * 20_000 + b"}", "application/json", 413),
            (b"[" * 10_000, "application/json", 400),  # nested too deep for the JSON parser
            (b'{"messages": [{"role": "user", "content": "hi \\ud800"}]}', "application/json", 400),  # lone surrogate
        ]:
            async with http.post(url, data=data, headers={"Content-Type": content_type}) as response:
                assert response.status == status
                assert "message" in (await response.json())["error"]
        async with http.get(base + "/v1/nothing-here") as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"
        async with http.post(url, json={"messages": CHAT, **GREEDY}) as response:
            assert response.status == 200
            assert (await response.json())["choices"][0]["message"]["content"] is not None


async def test_an_unexpected_failure_is_a_500_in_the_openai_shape_and_the_worker_keeps_serving(
    tiny_engines,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    engine = tiny_engines["causal"]
    async with running(create_app(engine, model_name="tiny")) as base, aiohttp.ClientSession() as http:
        url = base + "/v1/chat/completions"
        with monkeypatch.context() as patched:
            patched.setattr(engine, "prompt_ids", lambda messages: 1 / 0)
            async with http.post(url, json={"messages": CHAT, **GREEDY}) as response:
                assert response.status == 500
                assert (await response.json())["error"]["type"] == "server_error"
        async with http.post(url, json={"messages": CHAT, **GREEDY}) as response:
            assert response.status == 200


async def test_a_failure_mid_stream_ends_the_stream_with_an_error_event(tiny_engines, monkeypatch):  # noqa: F811
    engine = tiny_engines["causal"]
    stepped = engine.step

    def fail_after_the_first_token(batch):
        if any(row.produced for row in batch.rows):
            raise RuntimeError("the accelerator fell over")
        return stepped(batch)

    monkeypatch.setattr(engine, "step", fail_after_the_first_token)
    async with running(create_app(engine, model_name="tiny")) as base, aiohttp.ClientSession() as http:
        payload = {"messages": CHAT, "stream": True, "temperature": 0, "max_tokens": 8, "min_tokens": 8}
        async with http.post(base + "/v1/chat/completions", json=payload) as response:
            assert response.status == 200  # the first token went out before the failure
            events = [line for line in (await response.text()).split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert '"error"' in events[-2] and "generation failed: RuntimeError" in events[-2]


async def test_a_client_leaving_mid_stream_frees_its_row(tiny_engines, monkeypatch, caplog):  # noqa: F811
    engine = tiny_engines["causal"]
    stepped = engine.step
    monkeypatch.setattr(engine, "step", lambda batch: time.sleep(0.02) or stepped(batch))  # 60 steps: 1.2 s+
    app = create_app(engine, model_name="tiny")
    async with running(app) as base:
        async with aiohttp.ClientSession() as http:
            payload = {"messages": CHAT, "stream": True, "temperature": 0, "max_tokens": 60, "min_tokens": 60}
            async with http.post(base + "/v1/chat/completions", json=payload) as response:
                assert (await response.content.readline()).startswith(b"data: ")
        await _until(lambda: app[SCHEDULER].running == 0, timeout=0.5)  # well before its 60 tokens
        async with aiohttp.ClientSession() as http, http.get(base + "/healthz") as health:
            assert health.status == 200
    assert "unexpected" not in caplog.text


async def test_overload_answers_429_with_retry_after(tiny_engines):  # noqa: F811
    engine = tiny_engines["causal"]
    app = create_app(engine, model_name="tiny", max_batch_size=1, max_wait_ms=0, max_queue=1, lanes=1)
    async with running(app) as base, aiohttp.ClientSession() as http:
        url = base + "/v1/chat/completions"
        with Gate(engine) as gate:
            first = asyncio.create_task(http.post(url, json={"messages": CHAT, **GREEDY}))
            await asyncio.to_thread(gate.entered.wait, 10)
            second = asyncio.create_task(http.post(url, json={"messages": CHAT, **GREEDY}))
            await _until(lambda: app[SCHEDULER].waiting == 1)
            async with http.post(url, json={"messages": CHAT, **GREEDY}) as refused:
                assert refused.status == 429
                assert int(refused.headers["Retry-After"]) >= 1
                assert (await refused.json())["error"]["code"] == "queue_full"
            gate.opened.set()
            for task in (first, second):
                async with await task as response:
                    assert response.status == 200
        async with http.get(base + "/metrics") as response:
            assert 'vllm:request_rejected_total{model_name="tiny",reason="queue_full"} 1.0' in await response.text()


async def test_disconnected_client_is_dropped_from_the_queue(tiny_engines):  # noqa: F811
    engine = tiny_engines["causal"]
    app = create_app(engine, model_name="tiny", max_batch_size=1, max_wait_ms=0, lanes=1)
    async with running(app) as base, aiohttp.ClientSession() as http:
        url = base + "/v1/chat/completions"
        with Gate(engine) as gate:
            first = asyncio.create_task(http.post(url, json={"messages": CHAT, **GREEDY}))
            await asyncio.to_thread(gate.entered.wait, 10)
            async with aiohttp.ClientSession() as impatient:
                gone = asyncio.create_task(impatient.post(url, json={"messages": CHAT, **GREEDY}))
                await _until(lambda: app[SCHEDULER].waiting == 1)
                gone.cancel()
            await _until(lambda: app[SCHEDULER].waiting == 0)
            gate.opened.set()
            async with await first as response:
                assert response.status == 200
    # the abandoned request never reached the model: one queue time, observed as a request starts
    assert 'vllm:request_queue_time_seconds_count{model_name="tiny"} 1.0' in app[METRICS].exposition().decode()


async def test_health_and_metrics(tiny_engines):  # noqa: F811
    app = create_app(tiny_engines["seq2seq"], model_name="tiny")
    async with running(app) as base, aiohttp.ClientSession() as http:
        async with http.post(base + "/v1/chat/completions", json={"messages": CHAT, **GREEDY}) as response:
            assert response.status == 200
        async with http.get(base + "/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok", "model": "tiny", "waiting": 0, "running": 0}
        async with http.get(base + "/metrics") as response:
            text = await response.text()
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:request_queue_time_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:batch_size_count",
        "vllm:time_to_first_token_seconds_count",
    ):
        assert f'{name}{{model_name="tiny"}}' in text, name
    assert 'vllm:e2e_request_latency_seconds_count{model_name="tiny"} 1.0' in text


def _messages(raw: list[dict[str, str]]) -> list[ChatMessage]:
    return [ChatMessage(m["role"], m["content"]) for m in raw]


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)
