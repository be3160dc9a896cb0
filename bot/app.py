"""The bot process's one HTTP server: health, metrics, and the routes each channel mounts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.service import Service
from bot.settings import Settings
from db.engine import DatabaseUnavailable

log = logging.getLogger(__name__)

SERVICE = web.AppKey("service", Service)


async def livez(_request: web.Request) -> web.Response:
    """200 while the process's event loop serves requests; it asks nothing of the database or the model.
    For the orchestrator's liveness and readiness probes: while the database is down the bot still
    answers every message with the safe words (Dialogue.answer_unstored), so a replica must neither be
    restarted nor taken out of its Service for it. /healthz is the check that tells about the database."""
    return web.json_response({"status": "ok"})


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers; the model's state is reported but does not fail the check,
    because the crisis layer and fallback answers keep working without it."""
    service = request.app[SERVICE]
    model = service.dialogue.backend.model_name if service.dialogue.backend else None
    try:
        await service.db.ping()
    except DatabaseUnavailable:
        return web.json_response({"status": "error", "database": "unreachable", "model": model}, status=503)
    return web.json_response({"status": "ok", "database": "ok", "model": model})


async def metrics(_request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def _realerts(app: web.Application) -> AsyncIterator[None]:
    """Re-alert operators about unacknowledged escalations while the server runs."""
    service = app[SERVICE]
    after = service.settings.realert_after_s
    task = asyncio.create_task(service.handoff.run_realerts(interval_s=min(30.0, after / 2), older_than_s=after))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _freeze_startup_objects(_app: web.Application) -> None:
    """Move everything loaded at start (modules, lexicons, models: ~190k objects) out of the garbage
    collector's view, once per process: a full collection scanned them all, an 80 ms pause that lands
    on whichever turns are in flight. They live as long as the process anyway."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True


_frozen = False


def safety_gaps(settings: Settings) -> list[str]:
    """What this deployment lacks that a person at risk would miss. Start-up goes on (the safe words
    and helplines never depend on these), but says so as errors: a quiet gap would be found in a crisis."""
    gaps = []
    if not (settings.telegram_enabled and settings.operator_chat_id is not None) and not settings.operator_token:
        gaps.append(
            "no operators: neither an operator chat (SUPPORTBOT_TELEGRAM_TOKEN and SUPPORTBOT_OPERATOR_CHAT_ID)"
            " nor the console (SUPPORTBOT_OPERATOR_TOKEN); crisis escalations are recorded and answered with the"
            " safe words, but no person sees them"
        )
    if settings.twilio_enabled and not settings.hotline_number:
        gaps.append(
            "SUPPORTBOT_HOTLINE_NUMBER is not set: a caller at risk hears the helpline numbers but is not"
            " transferred to a person"
        )
    return gaps


def create_app(service: Service) -> web.Application:
    """The aiohttp application with health, metrics, web chat and every configured channel."""
    from bot.channels import operator_console, telegram, twilio
    from bot.channels import web as webchat

    for gap in safety_gaps(service.settings):
        log.error("%s", gap)
    app = web.Application(client_max_size=1024 * 1024)
    app[SERVICE] = service
    app.router.add_get("/livez", livez)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_realerts)
    app.on_startup.append(_freeze_startup_objects)
    webchat.mount(app, service)
    operator_console.mount(app, service)
    telegram.mount(app, service)
    twilio.mount(app, service)
    return app
