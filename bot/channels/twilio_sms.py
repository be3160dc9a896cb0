"""SMS: the dialogue turn by text message, the STOP/START/HELP keywords, and operators' messages out by SMS.

A reply goes back as TwiML <Message>. Twilio joins a long message into one up to 1600 characters;
anything longer is split at a paragraph, sentence or word and numbered, because separate SMS may
arrive out of order.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from bot.channels.twilio_callers import CHANNEL, Caller, identify, remember, set_opted_out
from bot.channels.twilio_security import Form
from bot.channels.twilio_texts import PhoneTexts, xml_safe
from bot.channels.twilio_turns import PendingTurns
from bot.dialogue import Dialogue, Incoming, Outcome
from bot.handoff import Handoff, Refused
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

    answer_within_s = 10.0  # a reply not ready by then is sent later by REST (Twilio stops waiting at 15 s)

    def __init__(self, dialogue: Dialogue, handoff: Handoff, turns: PendingTurns, texts: PhoneTexts) -> None:
        self.dialogue = dialogue
        self.handoff = handoff
        self.turns = turns
        self.texts = texts
        self.sender: SmsSender | None = None  # set at start-up when TWILIO_SMS_FROM is configured
        self._later: dict[str, asyncio.Task[None]] = {}

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
        if keyword == "forget":  # asked first, as a deletion cannot be undone; honoured even after STOP
            return _messages([self.texts.text("sms_forget_confirm", locale)])
        if keyword == "forget_confirmed":
            return await self._forget(caller, locale)
        incoming = Incoming(
            CHANNEL, caller.external_id, body, channel_message_id=sid, locale=locale, contact=caller.number
        )
        if known and known.opted_out:
            return await self._opted_out(incoming)
        if keyword == "human":
            return await self._human(caller, locale)
        result = await self.turns.answer(incoming, self.answer_within_s if self.sender else None)
        if result is None:  # slow: answer now with nothing, and text the reply when it is ready
            if sid not in self._later:  # Twilio's retry of the same message must not send it twice
                self._later[sid] = asyncio.create_task(self._send_later(incoming))
            return MessagingResponse()
        if result.reply is None:  # an operator holds the conversation and answers through the SMS sender
            return MessagingResponse()
        return _messages(split_sms(result.reply))

    async def _opted_out(self, incoming: Incoming) -> MessagingResponse:
        """They asked for no more messages: nothing is stored or answered, unless the crisis layer sees
        a risk to life. Then operators are alerted, and the safe words are sent in case they still can
        be (Twilio itself blocks messages to a number that texted STOP to it)."""
        result = await self.dialogue.answer_unstored(incoming)
        if result.outcome != Outcome.CRISIS or result.reply is None:
            return MessagingResponse()
        return _messages(split_sms(result.reply))

    async def _send_later(self, incoming: Incoming) -> None:
        assert self.sender is not None and incoming.channel_message_id is not None
        try:
            result = await self.turns.answer(incoming, None)
            if result is not None and result.reply is not None:
                await self.sender.send(incoming.external_id, result.reply)
        except Exception:  # a background task: its failure goes to the log, never to the texter
            log.exception("could not send a delayed SMS reply")
        finally:
            self._later.pop(incoming.channel_message_id, None)

    async def aclose(self) -> None:
        """Wait briefly for replies still to be sent at shutdown, then cancel them."""
        if self._later:
            await asyncio.wait(list(self._later.values()), timeout=5)
        for task in list(self._later.values()):
            task.cancel()

    async def _opt(self, caller: Caller, out: bool, locale: str) -> MessagingResponse:
        try:
            await set_opted_out(self.dialogue.db, caller, out)
        except DATABASE_ERRORS:
            log.exception("database failed recording an SMS opt-%s", "out" if out else "in")
            raise web.HTTPServiceUnavailable(text="database unavailable") from None
        key = "sms_stopped" if out else "sms_started"
        return _messages([self.texts.text(key, locale, emergency=caller.emergency)])

    async def _forget(self, caller: Caller, locale: str) -> MessagingResponse:
        """Delete everything stored about this number: its texts and its calls (one person, one user)."""
        try:
            await self.dialogue.forget(CHANNEL, caller.external_id)
        except DATABASE_ERRORS:
            log.exception("database failed deleting a texter's data")
            return _messages([text("forget_failed", locale)])
        return _messages([text("forgotten", locale)])

    async def _human(self, caller: Caller, locale: str) -> MessagingResponse:
        try:
            await self.handoff.request_human(CHANNEL, caller.external_id)
        except DATABASE_ERRORS:
            log.exception("database failed asking for a person for a texter")
            return _messages([text("fallback", locale)])
        return _messages([self.texts.text("sms_human", locale, emergency=caller.emergency)])


class Undeliverable(Refused):
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
            try:
                await self.client.messages.create_async(to=number, body=part, **self._origin)
            except TwilioRestException as exc:
                # Twilio's error text names the number, and the caller logs what it catches: keep the
                # code (https://www.twilio.com/docs/api/errors) and drop the text and its chain.
                raise Undeliverable(f"Twilio refused the SMS: error {exc.code}, HTTP {exc.status}") from None
