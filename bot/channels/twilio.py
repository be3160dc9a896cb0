"""The Twilio channel in the bot's HTTP server: phone calls and SMS, on when TWILIO_ACCOUNT_SID and
TWILIO_AUTH_TOKEN are set. Routes are signature-checked (twilio_security), voice lives in twilio_voice,
SMS in twilio_sms; this module wires them to the service and starts/stops their background parts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from twilio.http import AsyncHttpClient
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot.channels.twilio_callers import CHANNEL
from bot.channels.twilio_security import MAX_FORM_BYTES, webhook
from bot.channels.twilio_sms import SmsLine, SmsSender
from bot.channels.twilio_texts import phone_texts
from bot.channels.twilio_turns import PendingTurns
from bot.channels.twilio_voice import VoiceLine
from bot.service import Service

log = logging.getLogger(__name__)

__all__ = ["MAX_FORM_BYTES", "mount"]


def mount(app: web.Application, service: Service, *, http_client: AsyncHttpClient | None = None) -> None:
    """Add the Twilio routes when the channel is configured. `http_client` replaces Twilio's REST transport
    (tests). Messages outside a webhook's answer (operators', slow replies) need TWILIO_SMS_FROM."""
    settings = service.settings
    if not settings.twilio_enabled:
        return
    assert settings.twilio_account_sid and settings.twilio_auth_token
    texts = phone_texts()
    turns = PendingTurns(service.dialogue, service.db)
    voice = VoiceLine(settings, service.dialogue, turns, texts, sms_reaches_callers=bool(settings.twilio_sms_from))
    sms = SmsLine(service.dialogue, service.handoff, turns, texts)
    validator = RequestValidator(settings.twilio_auth_token)
    routes = {
        "/twilio/voice": voice.call,
        "/twilio/voice/gather": voice.gather,
        "/twilio/voice/pickup": voice.pickup,
        "/twilio/voice/dial-status": voice.dial_status,
        "/twilio/voice/status": voice.status,
        "/twilio/sms": sms.message,
    }
    for path, handler in routes.items():
        route = path.removeprefix("/twilio/")
        app.router.add_post(path, webhook(route, handler, validator, settings.public_url))

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        owned: AsyncTwilioHttpClient | None = None  # the REST transport made here (in the running loop) and closed here
        if settings.twilio_sms_from:
            transport = http_client or (owned := AsyncTwilioHttpClient())
            rest = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=transport)
            sms.sender = SmsSender(service.db, rest, settings.twilio_sms_from)
            service.handoff.register_sender(CHANNEL, sms.sender.send)
        else:
            log.warning(
                "SUPPORTBOT_TWILIO_SMS_FROM is not set: operators cannot write to phone users by SMS, and an SMS"
                " reply slower than Twilio's 15 s webhook wait is never delivered"
            )
        yield
        await sms.aclose()
        await turns.aclose()
        if owned is not None:
            await owned.close()

    app.cleanup_ctx.append(lifecycle)
