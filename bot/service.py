"""Wiring one bot process together: settings -> database, inference backend, crisis layer, dialogue."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot.alerts import OperatorAlerts
from bot.dialogue import Dialogue
from bot.handoff import Handoff
from bot.safety import Safety
from bot.settings import Settings
from bot.texts import builtin_personas
from db import crypto, migrate, repo
from db.engine import DATABASE_ERRORS, Database
from inference.api import ChatBackend

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The process cannot start; the message is one line for the operator who started it."""


async def open_backend(settings: Settings) -> ChatBackend | None:
    """The worker client when INFERENCE_URL is set, else the in-process model; None if it cannot load.

    A missing model does not stop the service: the crisis layer works without it and the turn
    answers with a fallback message, so the failure is logged loudly instead.
    """
    if settings.inference_url:
        from inference.client import OpenAIChatClient

        return OpenAIChatClient(settings.inference_url, timeout=settings.reply_timeout_s)
    from inference.local import InProcessBackend

    try:
        return await asyncio.to_thread(InProcessBackend.from_pretrained, settings.model)
    except Exception as exc:
        log.error("model %s could not be loaded (%s); replies will be fallback messages", settings.model, exc)
        return None


def load_crisis_layer(settings: Settings) -> Safety:
    """The crisis layer from its data files; a malformed file stops start-up with one line."""
    from bot.crisis.layer import CrisisLayer

    try:
        return CrisisLayer.load(
            settings.crisis_classifier,
            second_look_workers=settings.crisis_second_look_workers,
            second_look_queue=settings.crisis_second_look_queue,
        )
    except (OSError, ValueError) as exc:  # LexiconError, ResponseError, HelplineError are ValueErrors
        raise StartupError(f"crisis layer data cannot be loaded: {exc}") from None


@dataclass
class Service:
    """Everything a channel needs, opened once per process."""

    settings: Settings
    db: Database
    dialogue: Dialogue
    alerts: OperatorAlerts
    handoff: Handoff

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        backend: ChatBackend | None = None,
        safety: Safety | None = None,
        load_backend: bool = True,
    ) -> Service:
        """Open the database (migrating it), the crisis layer and the backend; fail with one clear line."""
        from db.engine import DatabaseUnavailable

        if safety is None:
            safety = load_crisis_layer(settings)
        crypto.configure(settings.encryption_key)
        db = Database(settings.database_url)
        try:
            await db.ping()
            await migrate.upgrade(settings.database_url)
            async with db.transaction() as session:
                key = await repo.remembered(session, "encryption_key", crypto.fingerprint())
            if key != crypto.fingerprint():
                await db.dispose()
                raise StartupError(
                    "SUPPORTBOT_ENCRYPTION_KEY is not the key this database was written with (or was added or"
                    " removed since): its messages could not be read, and phone users could not find, or delete,"
                    " their data. Start with the original key, or with a new database."
                )
            async with db.transaction() as session:
                specs = builtin_personas()
                await repo.sync_personas(session, [(p.key, p.name, p.description, p.lines) for p in specs])
        except DatabaseUnavailable as exc:
            await db.dispose()
            raise StartupError(str(exc)) from None
        except DATABASE_ERRORS as exc:  # reachable, then failing while being prepared
            await db.dispose()
            reason = getattr(exc, "orig", None) or exc
            raise StartupError(f"the database failed while being prepared: {type(exc).__name__}: {reason}") from None
        if backend is None and load_backend:
            backend = await open_backend(settings)
        alerts = OperatorAlerts()
        handoff = Handoff(db, alerts)
        dialogue = Dialogue(db, backend, safety, settings, alerts, pusher=handoff)
        return cls(settings, db, dialogue, alerts, handoff)

    async def close(self) -> None:
        self.dialogue.safety.close()
        if self.dialogue.backend is not None:
            await self.dialogue.backend.aclose()
        await self.db.dispose()
