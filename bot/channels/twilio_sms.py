"""SMS: the dialogue turn by text message, the STOP/START/HELP keywords, and operators' messages out by SMS.

A reply goes back as TwiML <Message>. Twilio joins a long message into one up to 1600 characters;
anything longer is split at a paragraph, sentence or word and numbered, because separate SMS may
arrive out of order.
"""

from __future__ import annotations

import logging

from aiohttp import web
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from bot.channels.twilio_callers import CHANNEL, Caller, identify, remember, set_opted_out
from bot.channels.twilio_security import Form
from bot.channels.twilio_texts import PhoneTexts, xml_safe
from bot.dialogue import Dialogue, Incoming
from bot.handoff import Handoff
from bot.texts import text
from db import repo
from db.engine import DATABASE_ERRORS, Database

log = logging.getLogger(__name__)

SMS_LIMIT = 1600  # characters Twilio delivers as one (concatenated) message
_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", "; ", ", ", " ")


def split_sms(body: str, limit: int = SMS_LIMIT) -> list[str]:
    """Parts of at most `limit` characters, broken where a reader would pause, numbered '(i/n)' when several."""
    body = body.strip()
    if len(body) <= limit:
        return [body]
    room = limit - len(" (99/99)")
    parts: list[str] = []
    while len(body) > room:
        cut = _break_at(body, room)
        parts.append(body[:cut].rstrip())
        body = body[cut:].lstrip()
    if body:
        parts.append(body)
    return [f"{part} ({i}/{len(parts)})" for i, part in enumerate(parts, 1)]


def _break_at(body: str, room: int) -> int:
    window = body[:room]
    for mark in _BREAKS:
        at = window.rfind(mark)
        if at > room // 2:
            return at + len(mark)
    return room


def _messages(parts: list[str]) -> MessagingResponse:
    response = MessagingResponse()
    for part in parts:
        response.message(xml_safe(part))
    return response


class SmsLine:
    """The handler for POST /twilio/sms."""

    def __init__(self, dialogue: Dialogue, handoff: Handoff, texts: PhoneTexts) -> None:
        self.dialogue = dialogue
        self.handoff = handoff
        self.texts = texts

    async def message(self, _request: web.Request, form: Form) -> MessagingResponse:
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        if not sid or len(sid) > 64:
            raise web.HTTPBadRequest(text="MessageSid is required")
        caller, body = identify(form, self.texts), form.get("Body", "")
        keyword = self.texts.keyword(body)
        try:
            known = await remember(self.dialogue.db, caller)
        except DATABASE_ERRORS:
            log.exception("database failed looking up a texter")
            known = None
        locale = known.locale if known else caller.locale
        if keyword == "stop" or (keyword == "start" and known and known.opted_out):
            return await self._opt(caller, keyword == "stop", locale)
        if keyword == "help":  # answered even after STOP: it is what the person asked for
            return _messages([self.texts.text("sms_help", locale, emergency=caller.emergency)])
        if known and known.opted_out:
            return MessagingResponse()  # they asked for no more messages; nothing is stored or sent
        if keyword == "human":
            return await self._human(caller, locale)
        result = await self.dialogue.handle(
            Incoming(CHANNEL, caller.external_id, body, channel_message_id=sid, locale=locale, contact=caller.number)
        )
        if result.reply is None:  # an operator holds the conversation and answers through the SMS sender
            return MessagingResponse()
        return _messages(split_sms(result.reply))

    async def _opt(self, caller: Caller, out: bool, locale: str) -> MessagingResponse:
        try:
            await set_opted_out(self.dialogue.db, caller, out)
        except DATABASE_ERRORS:
            log.exception("database failed recording an SMS opt-%s", "out" if out else "in")
            raise web.HTTPServiceUnavailable(text="database unavailable") from None
        key = "sms_stopped" if out else "sms_started"
        return _messages([self.texts.text(key, locale, emergency=caller.emergency)])

    async def _human(self, caller: Caller, locale: str) -> MessagingResponse:
        try:
            await self.handoff.request_human(CHANNEL, caller.external_id)
        except DATABASE_ERRORS:
            log.exception("database failed asking for a person for a texter")
            return _messages([text("fallback", locale)])
        return _messages([self.texts.text("sms_human", locale, emergency=caller.emergency)])


class Undeliverable(Exception):
    """An operator's message cannot go to this person by SMS."""


class SmsSender:
    """Delivers operators' messages to phone users by SMS through Twilio's REST API (registered with Handoff)."""

    def __init__(self, db: Database, client: Client, sender: str) -> None:
        self.db = db
        self.client = client
        # A Messaging Service SID (MG...) picks the number itself; otherwise send from this number.
        self._origin = {"messaging_service_sid": sender} if sender.startswith("MG") else {"from_": sender}

    async def send(self, external_id: str, body: str) -> None:
        async with self.db.transaction() as session:
            user = await repo.find_user(session, CHANNEL, external_id)
            number, opted_out = (user.contact, user.opted_out) if user else (None, False)
        if number is None:
            raise Undeliverable("no phone number is stored for this person")
        if opted_out:
            raise Undeliverable("this person texted STOP; they get no messages until they text START")
        for part in split_sms(body):
            await self.client.messages.create_async(to=number, body=part, **self._origin)
