"""The inference worker: an OpenAI-compatible HTTP server in front of the batching scheduler.

Routes: POST /v1/chat/completions (optionally streamed as server-sent events), GET /v1/models,
GET /healthz, GET /metrics. Every error is JSON in OpenAI's shape; a full queue answers 429 and a
worker that is shutting down 503, both with Retry-After. Handlers are cancelled when the client
disconnects, which drops the request from the queue. Message text is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from inference.engine import Engine, Generated
from inference.metrics import WorkerMetrics
from inference.scheduler import Overloaded, Scheduler, SchedulerClosed, TokenSink
from inference.schema import (
    ApiError,
    ChatRequest,
    Limits,
    chunk_body,
    completion_body,
    completion_id,
    parse_request,
    usage,
)

log = logging.getLogger(__name__)

SCHEDULER = web.AppKey("scheduler", Scheduler)
METRICS = web.AppKey("metrics", WorkerMetrics)
LIMITS = web.AppKey("limits", Limits)
MODEL_NAME = web.AppKey("model_name", str)
STARTED = web.AppKey("started", int)


def create_app(
    engine: Engine,
    *,
    model_name: str | None = None,
    limits: Limits | None = None,
    max_batch_size: int = 32,
    max_wait_ms: float = 10.0,
    max_queue: int = 256,
    max_beam_rows: int | None = None,
    lanes: int | None = None,
) -> web.Application:
    """The worker application around a loaded engine; the scheduler runs while the app does."""
    limits = limits or Limits()
    name = model_name or engine.name
    metrics = WorkerMetrics(name)
    app = web.Application(client_max_size=limits.max_body_bytes, middlewares=[_errors])
    app[LIMITS] = limits
    app[MODEL_NAME] = name
    app[METRICS] = metrics
    app[STARTED] = int(time.time())
    app[SCHEDULER] = Scheduler(
        engine,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        max_beam_rows=max_beam_rows,
        lanes=lanes,
        metrics=metrics,
    )
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    app[SCHEDULER].start()


async def _stop(app: web.Application) -> None:
    await app[SCHEDULER].aclose()


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Render every refusal as an OpenAI error object, with the right status."""
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.status >= 400:
            request.app[METRICS].rejected(exc.code or str(exc.status))
        return web.json_response(exc.body(), status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
        message = exc.reason
        if exc.status == 413:
            message = f"the request body is larger than {request.app[LIMITS].max_body_bytes} bytes"
        error = ApiError(exc.status, message, code=code)
        return web.json_response(error.body(), status=exc.status)
    except ConnectionError:  # the client went away mid-answer: nobody to answer
        raise
    except Exception as exc:  # a bug, not a refusal: still an OpenAI error, and the worker keeps serving
        # The type only: an exception's text may quote the request, and request text never goes to logs.
        log.error("unexpected %s answering %s %s", type(exc).__name__, request.method, request.path)
        error = ApiError(500, f"internal error ({type(exc).__name__})", type="server_error")
        return web.json_response(error.body(), status=500)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    app = request.app
    started = time.perf_counter()
    chat = parse_request(await _json(request), app[LIMITS])
    if chat.model is not None and chat.model != app[MODEL_NAME]:
        raise ApiError(404, f"the model {chat.model!r} does not exist", param="model", code="model_not_found")
    scheduler = app[SCHEDULER]
    prompt = scheduler.engine.prompt_ids(chat.chat())
    if chat.stream:
        response = await _stream(request, chat, prompt)
    else:
        result = await _generate(scheduler, prompt, chat)
        body = completion_body(
            completion_id(),
            app[MODEL_NAME],
            result.text,
            result.finish_reason,
            result.prompt_tokens,
            result.completion_tokens,
        )
        response = web.json_response(body)
    app[METRICS].e2e_latency.observe(time.perf_counter() - started)
    return response


async def _json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "send the request as application/json", code="unsupported_media_type")
    body = await request.read()  # raises 413 beyond client_max_size
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ApiError(400, f"the request body is not valid JSON ({exc.__class__.__name__})") from None


async def _generate(
    scheduler: Scheduler, prompt: list[int], chat: ChatRequest, on_token: TokenSink | None = None
) -> Generated:
    try:
        return await scheduler.generate(prompt, chat.params(), on_token=on_token)
    except Overloaded as exc:
        raise ApiError(
            429, str(exc), type="server_overloaded", code="queue_full", headers={"Retry-After": str(exc.retry_after)}
        ) from None
    except SchedulerClosed as exc:
        raise ApiError(503, str(exc), type="server_error", code="shutting_down", headers={"Retry-After": "5"}) from None
    except Exception as exc:
        log.exception("generation failed")
        raise ApiError(500, f"generation failed: {type(exc).__name__}", type="server_error") from None


async def _stream(request: web.Request, chat: ChatRequest, prompt: list[int]) -> web.StreamResponse:
    """Server-sent events: one chunk per decoded piece of text, then the finish reason, [DONE]."""
    app = request.app
    scheduler, name, id = app[SCHEDULER], app[MODEL_NAME], completion_id()
    tokens: asyncio.Queue[int | None] = asyncio.Queue()
    task = asyncio.ensure_future(_generate(scheduler, prompt, chat, on_token=tokens.put_nowait))
    task.add_done_callback(lambda _: tokens.put_nowait(None))
    try:
        first = await tokens.get()  # errors before the first token still get a proper status
        if first is None:
            await task
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await _event(response, chunk_body(id, name, {"role": "assistant", "content": ""}))
        try:
            decoded, text = [], ""
            token = first
            while token is not None:
                decoded.append(token)
                current = scheduler.engine.tokenizer.decode(decoded, skip_special_tokens=True).lstrip()
                if not current.endswith("\ufffd") and len(current) > len(text):
                    await _event(response, chunk_body(id, name, {"content": current[len(text) :]}))
                    text = current
                token = await tokens.get()
            result = await task
        except ApiError as exc:  # the status line has gone out: the error is the stream's last event
            request.app[METRICS].rejected(exc.code or str(exc.status))
            await _event(response, exc.body())
        else:
            if len(result.text) > len(text) and result.text.startswith(text):  # e.g. beam search: nothing streamed
                await _event(response, chunk_body(id, name, {"content": result.text[len(text) :]}))
            await _event(response, chunk_body(id, name, {}, result.finish_reason))
            if chat.stream_options and chat.stream_options.include_usage:
                await _event(
                    response, chunk_body(id, name, {}, usage_=usage(result.prompt_tokens, result.completion_tokens))
                )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    finally:
        task.cancel()


async def _event(response: web.StreamResponse, body: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(body).encode() + b"\n\n")


async def models(request: web.Request) -> web.Response:
    engine = request.app[SCHEDULER].engine
    model = {
        "id": request.app[MODEL_NAME],
        "object": "model",
        "created": request.app[STARTED],
        "owned_by": "supportbot",
        "max_model_len": engine.max_positions,
    }
    return web.json_response({"object": "list", "data": [model]})


async def healthz(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    body = {
        "status": "closing" if scheduler.closed else "ok",
        "model": request.app[MODEL_NAME],
        "waiting": scheduler.waiting,
        "running": scheduler.running,
    }
    return web.json_response(body, status=503 if scheduler.closed else 200)


async def metrics_text(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def run_worker(app: web.Application, host: str, port: int) -> None:
    """Serve until cancelled; handlers are cancelled when their client disconnects."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=log)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("worker for %s listening on http://%s:%d", app[MODEL_NAME], host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
