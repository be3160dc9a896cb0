"""The bot's backends: the HTTP client's retry rules, a worker killed mid-request, the in-process backend."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web

from inference.api import BackendError, ChatMessage, Completion, GenerationParams
from inference.client import OpenAIChatClient
from inference.engine import ModelLoadError
from inference.local import InProcessBackend
from tests.inference_fixtures import running, tiny_model_dirs  # noqa: F401

MESSAGES = [ChatMessage("system", "I am kind."), ChatMessage("user", "I can't sleep")]
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "served",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": " I'm here. "}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
}


class FakeServer:
    """An OpenAI-compatible server whose answers the test scripts, one per request."""

    def __init__(self, answers: list[Callable[[], web.StreamResponse]]) -> None:
        self.answers = answers
        self.requests: list[dict] = []
        self.model_listings = 0
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_get("/v1/models", self.models)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return await answer() if asyncio.iscoroutinefunction(answer) else answer()

    async def models(self, request: web.Request) -> web.Response:
        self.model_listings += 1
        return web.json_response({"object": "list", "data": [{"id": "served", "object": "model"}]})


def ok() -> web.Response:
    return web.json_response(COMPLETION)


def error(status: int, headers: dict[str, str] | None = None) -> Callable[[], web.Response]:
    body = {"error": {"message": f"status {status}", "type": "x", "param": None, "code": None}}
    return lambda: web.json_response(body, status=status, headers=headers)


async def test_retries_5xx_and_429_then_succeeds():
    server = FakeServer([error(503), error(429, {"Retry-After": "0"}), error(500), ok])
    async with running(server.app) as base:
        client = OpenAIChatClient(base, model="served", retries=3, backoff=0.01)
        reply = await client.complete(MESSAGES, GenerationParams(max_tokens=20, temperature=0.7))
        await client.aclose()
    assert reply == Completion("I'm here.", "served", 11, 4)
    assert len(server.requests) == 4
    assert server.requests[0] == {
        "model": "served",
        "max_tokens": 20,
        "temperature": 0.7,
        "messages": [{"role": "system", "content": "I am kind."}, {"role": "user", "content": "I can't sleep"}],
    }


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_never_retries_4xx(status):
    server = FakeServer([error(status), ok])
    async with running(server.app) as base:
        client = OpenAIChatClient(base + "/v1", model="served", retries=3, backoff=0.01)
        with pytest.raises(BackendError, match=f"HTTP {status}: status {status}"):
            await client.complete(MESSAGES, GenerationParams())
        await client.aclose()
    assert len(server.requests) == 1


async def test_gives_up_after_the_retries(caplog: pytest.LogCaptureFixture):
    server = FakeServer([error(502)])
    async with running(server.app) as base:
        client = OpenAIChatClient(base, model="served", retries=2, backoff=0.01)
        with pytest.raises(BackendError, match="after 3 attempts: HTTP 502$"):
            await client.complete(MESSAGES, GenerationParams())
        await client.aclose()
    assert len(server.requests) == 3
    assert "status 502" not in caplog.text  # a server's error text may quote the request: never logged


@pytest.mark.parametrize(
    "body",
    [
        COMPLETION | {"choices": [{"index": 0, "message": {"role": "assistant", "content": 123}}]},
        COMPLETION | {"choices": [{"index": 0, "message": {"content": [{"type": "text", "text": "hi"}]}}]},
        COMPLETION | {"usage": [1]},
        [COMPLETION],
    ],
)
async def test_a_completion_of_the_wrong_shape_is_a_backend_error(body):
    server = FakeServer([lambda: web.json_response(body)])
    async with running(server.app) as base:
        client = OpenAIChatClient(base, model="served", retries=0)
        with pytest.raises(BackendError, match="answered without a chat completion"):
            await client.complete(MESSAGES, GenerationParams())
        await client.aclose()


async def test_connection_refused_is_retried_then_a_backend_error():
    client = OpenAIChatClient(f"http://127.0.0.1:{_free_port()}", model="served", retries=2, backoff=0.01)
    with pytest.raises(BackendError, match="after 3 attempts: connection failed"):
        await client.complete(MESSAGES, GenerationParams())
    await client.aclose()


async def test_a_slow_reply_times_out_without_retrying():
    async def slow() -> web.Response:
        await asyncio.sleep(2)
        return ok()

    server = FakeServer([slow])
    async with running(server.app) as base:
        client = OpenAIChatClient(base, model="served", timeout=0.3, retries=3, backoff=0.01)
        with pytest.raises(BackendError, match="timed out"):
            await client.complete(MESSAGES, GenerationParams())
        await client.aclose()
    assert len(server.requests) == 1


async def test_asks_the_server_for_its_model_once():
    server = FakeServer([ok])
    async with running(server.app) as base:
        client = OpenAIChatClient(base)
        await asyncio.gather(*(client.complete(MESSAGES, GenerationParams()) for _ in range(3)))
        assert client.model_name == "served"
        await client.aclose()
    assert server.model_listings == 1
    assert {r["model"] for r in server.requests} == {"served"}


async def test_extra_sampling_fields_are_sent_only_when_set():
    server = FakeServer([ok])
    async with running(server.app) as base:
        client = OpenAIChatClient(base, model="served")
        await client.complete(MESSAGES, GenerationParams(num_beams=10, min_tokens=20, no_repeat_ngram_size=3, seed=1))
        await client.aclose()
    sent = server.requests[0]
    assert (sent["num_beams"], sent["min_tokens"], sent["no_repeat_ngram_size"], sent["seed"]) == (10, 20, 3, 1)
    assert "top_k" not in sent and "temperature" not in sent


async def test_worker_killed_mid_request_gives_backend_errors(tiny_model_dirs):  # noqa: F811
    port = _free_port()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "worker",
            "--model",
            str(tiny_model_dirs["seq2seq"]),
            "--port",
            str(port),
            "--max-batch-size",
            "4",
            "--log-level",
            "WARNING",
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(base, worker)
        client = OpenAIChatClient(base, model=str(tiny_model_dirs["seq2seq"]), retries=2, backoff=0.05)
        beams = GenerationParams(temperature=0, num_beams=10, min_tokens=60, max_tokens=60)
        calls = [asyncio.create_task(client.complete(MESSAGES, beams)) for _ in range(32)]
        await _until_busy(base)  # kill only once the worker is generating
        worker.send_signal(signal.SIGKILL)
        results = await asyncio.gather(*calls, return_exceptions=True)
        await client.aclose()
    finally:
        worker.kill()
        worker.wait(timeout=10)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures and all(isinstance(f, BackendError) for f in failures)


async def test_in_process_backend_answers_and_fails_cleanly(tiny_model_dirs):  # noqa: F811
    path = str(tiny_model_dirs["causal"])
    backend = await asyncio.to_thread(InProcessBackend.from_pretrained, path, max_batch_size=4, max_wait_ms=1)
    assert backend.model_name == path
    replies = await asyncio.gather(
        *(backend.complete(MESSAGES, GenerationParams(temperature=0, min_tokens=4, max_tokens=6)) for _ in range(3))
    )
    assert len({r.text for r in replies}) == 1 and replies[0].completion_tokens >= 4
    assert replies[0].prompt_tokens == len(backend.engine.prompt_ids(MESSAGES))
    await backend.aclose()
    with pytest.raises(BackendError, match="shutting down"):
        await backend.complete(MESSAGES, GenerationParams())


def test_in_process_backend_reports_a_missing_model(tmp_path):
    with pytest.raises(ModelLoadError, match="missing-model"):
        InProcessBackend.from_pretrained(str(tmp_path / "missing-model"))


async def _until_busy(base: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            async with http.get(base + "/healthz") as response:
                if (await response.json())["running"] > 0:
                    return
            await asyncio.sleep(0.02)
    raise AssertionError("the worker never started generating")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _wait_healthy(base: str, worker: subprocess.Popen, timeout: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            assert worker.poll() is None, "the worker exited during start-up"
            try:
                async with http.get(base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the worker did not come up")
