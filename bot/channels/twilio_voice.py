"""The phone line: a spoken conversation with the dialogue turn, and a transfer to a person when it matters.

A call is a chain of TwiML documents. Each <Gather> posts what the caller said to /twilio/voice/gather;
the state a call needs between requests (utterance number, silences, holds, failed transfers,
language) travels in the action URLs, which Twilio signs, so any replica can answer any request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from aiohttp import web
from twilio.twiml.voice_response import Gather, VoiceResponse

from bot.channels.twilio_callers import CHANNEL, Caller, identify, record, remember
from bot.channels.twilio_security import Form
from bot.channels.twilio_texts import PhoneTexts, speakable, spell_digits, xml_safe
from bot.channels.twilio_turns import PendingTurns
from bot.crisis.levels import Level
from bot.dialogue import Dialogue, Incoming, Outcome, TurnResult
from bot.settings import Settings
from bot.texts import LANGUAGES, builtin_personas, language_of
from db.engine import DATABASE_ERRORS

log = logging.getLogger(__name__)

SILENCES_BEFORE_GOODBYE = 2
MAX_TRANSFER_TRIES = 2  # after that a crisis on the same call gets the numbers spoken, not another ring
DIAL_TIMEOUT_S = 30
TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
_SPOKEN_FIXED = {Outcome.FALLBACK: "fallback", Outcome.FILTERED: "filtered", Outcome.TOO_LONG: "too_long"}


@dataclass(frozen=True, slots=True)
class CallState:
    """Where a call is, carried in the query string of every URL handed to Twilio."""

    turn: int = 1  # number of the caller's next utterance: CallSid:turn keys it, so Twilio's retries are idempotent
    silences: int = 0
    holds: int = 0
    transfers: int = 0  # failed transfers to the hotline
    lang: str = "en"

    def query(self) -> str:
        return f"n={self.turn}&s={self.silences}&h={self.holds}&x={self.transfers}&l={self.lang}"

    def next_turn(self) -> CallState:
        return replace(self, turn=self.turn + 1, silences=0, holds=0)

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> CallState:
        try:
            numbers = [
                int(query.get(key, default)) for key, default in (("n", "1"), ("s", "0"), ("h", "0"), ("x", "0"))
            ]
        except ValueError:
            raise web.HTTPBadRequest(text="malformed call state") from None
        if not all(0 <= number <= 100_000 for number in numbers):
            raise web.HTTPBadRequest(text="malformed call state")
        lang = query.get("l", "en")
        return cls(*numbers, lang=lang if lang in LANGUAGES else "en")


def is_crisis(result: TurnResult) -> bool:
    """A crisis turn: the crisis layer answered (a redelivery reports the message's assessed level instead)."""
    return result.outcome == Outcome.CRISIS or (result.duplicate and result.level >= Level.CONCERN)


def _call_sid(form: Form) -> str:
    sid = form.get("CallSid", "")
    if not sid or len(sid) > 64:
        raise web.HTTPBadRequest(text="CallSid is required")
    return sid


def _seconds(form: Form, key: str) -> int:
    value = form.get(key, "")
    return int(value) if value.isdigit() and len(value) < 9 else 0


class VoiceLine:
    """Handlers for the voice webhooks; each returns the TwiML Twilio runs next."""

    def __init__(
        self,
        settings: Settings,
        dialogue: Dialogue,
        turns: PendingTurns,
        texts: PhoneTexts,
        *,
        sms_reaches_callers: bool,
    ) -> None:
        self.settings = settings
        self.dialogue = dialogue
        self.turns = turns
        self.texts = texts
        self.sms_reaches_callers = sms_reaches_callers
        self._base = settings.public_url.rstrip("/") if settings.public_url else ""

    # --- webhooks --------------------------------------------------------------------------

    async def call(self, _request: web.Request, form: Form) -> VoiceResponse:
        """POST /twilio/voice: greet the caller (by persona, in their language) and listen."""
        _call_sid(form)
        caller = identify(form, self.texts)
        try:
            known = await remember(self.dialogue.db, caller)
        except DATABASE_ERRORS:
            log.exception("database failed looking up a caller; greeting them anyway")
            state = CallState(lang=language_of(caller.locale))
            return self._listen(state, self.texts.greeting(builtin_personas()[0].key, state.lang))
        state = CallState(lang=language_of(known.locale))
        if known.returning:
            return self._listen(state, self.texts.text("welcome_back", state.lang))
        return self._listen(state, self.texts.greeting(known.persona_key, state.lang))

    async def gather(self, request: web.Request, form: Form) -> VoiceResponse:
        """POST /twilio/voice/gather: what the caller said (or silence) -> the reply, a hold, or a transfer."""
        state, caller, sid = CallState.parse(request.query), identify(form, self.texts), _call_sid(form)
        speech = form.get("SpeechResult", "").strip()
        if not speech:
            return self._silence(state)
        incoming = Incoming(
            CHANNEL,
            caller.external_id,
            speech,
            channel_message_id=f"{sid}:{state.turn}",
            locale=caller.locale,
            contact=caller.number,
            call=True,
        )
        result = await self.turns.answer(incoming, self.settings.twilio_hold_after_s)
        if result is not None:
            return self._reply(result, state)
        # The turn is slow (a busy model, or an earlier turn ahead of it): a crisis must not wait for it.
        # Every component reads it, the slow ones too (tens of ms of CPU): in a thread, not on the event loop.
        assessment = await asyncio.to_thread(self.dialogue.safety.assess, speech, ())
        if assessment.level >= Level.CONCERN:
            safe = self.dialogue.safety.safe_reply(assessment, state.lang, caller.country)
            return self._crisis(safe.text, state.next_turn())
        return self._hold(state)

    async def pickup(self, request: web.Request, form: Form) -> VoiceResponse:
        """POST /twilio/voice/pickup: the redirect after a holding phrase collects the reply when ready."""
        state, caller, sid = CallState.parse(request.query), identify(form, self.texts), _call_sid(form)
        wait_s = self.settings.twilio_hold_after_s
        result = await self.turns.pickup(CHANNEL, caller.external_id, f"{sid}:{state.turn}", wait_s)
        if result is not None:
            return self._reply(result, state)
        if state.holds >= self.settings.twilio_max_holds:
            log.warning("gave up waiting for the reply to utterance %d of a call", state.turn)
            return self._listen(state.next_turn(), self.texts.text("slow", state.lang))
        return self._hold(state)

    async def dial_status(self, request: web.Request, form: Form) -> VoiceResponse:
        """POST /twilio/voice/dial-status: the transfer ended; if it never connected, say the number slowly."""
        state, caller = CallState.parse(request.query), identify(form, self.texts)
        status = form.get("DialCallStatus", "")
        await self._record(caller, "hotline_transfer", status=status[:32], seconds=_seconds(form, "DialCallDuration"))
        if status in ("completed", "answered"):
            return self._listen(state, self.texts.text("after_transfer", state.lang))
        if status == "canceled":  # the caller hung up while it rang
            response = VoiceResponse()
            response.hangup()
            return response
        number = spell_digits(self.settings.hotline_number or "")
        failed = replace(state, transfers=state.transfers + 1)
        return self._speak_then_listen(
            failed, [self.texts.text("transfer_failed", state.lang, number=number)], self.texts.text("stay", state.lang)
        )

    async def status(self, _request: web.Request, form: Form) -> VoiceResponse:
        """POST /twilio/voice/status (the number's status callback): at the call's end, close the conversation."""
        status = form.get("CallStatus", "")
        if status in TERMINAL_CALL_STATUSES:
            caller = identify(form, self.texts)
            try:
                await record(
                    self.dialogue.db, caller, "call_ended", status=status, seconds=_seconds(form, "CallDuration")
                )
                await self.dialogue.end_conversation(CHANNEL, caller.external_id)
            except DATABASE_ERRORS:
                log.exception("database failed recording the end of a call")
                raise web.HTTPServiceUnavailable(text="database unavailable") from None
        return VoiceResponse()

    # --- TwiML ------------------------------------------------------------------------------

    def _reply(self, result: TurnResult, state: CallState) -> VoiceResponse:
        after = state.next_turn()
        if is_crisis(result):
            return self._crisis(result.reply or self.texts.text("fallback", state.lang), after)
        if result.reply is None:  # an operator holds the conversation
            lines = [self.texts.text("operator", state.lang)]
            if self.sms_reaches_callers:
                lines.append(self.texts.text("operator_sms", state.lang))
            return self._listen(after, *lines)
        if result.outcome in _SPOKEN_FIXED:
            return self._listen(after, self.texts.text(_SPOKEN_FIXED[result.outcome], state.lang))
        # A conversation still at risk carries the helplines in the reply: numbers digit by digit.
        return self._listen(after, speakable(result.reply, spell_numbers=result.level >= Level.CONCERN))

    def _crisis(self, safe_text: str, state: CallState) -> VoiceResponse:
        """The safe message, then a transfer to HOTLINE_NUMBER (with a fallback action), or the numbers spoken."""
        lines = [speakable(safe_text, spell_numbers=True)]
        hotline = self.settings.hotline_number
        if not hotline or state.transfers >= MAX_TRANSFER_TRIES:
            return self._speak_then_listen(state, lines, self.texts.text("stay", state.lang))
        lines.append(self.texts.text("transfer", state.lang))
        response = VoiceResponse()
        self._say_all(response, state, lines)
        response.dial(
            hotline,
            action=self._url("dial-status", state),
            method="POST",
            timeout=DIAL_TIMEOUT_S,
            answer_on_bridge=True,
        )
        return response

    def _silence(self, state: CallState) -> VoiceResponse:
        if state.silences + 1 >= SILENCES_BEFORE_GOODBYE:
            response = VoiceResponse()
            self._say_all(response, state, [self.texts.text("goodbye", state.lang)])
            response.hangup()
            return response
        return self._listen(replace(state, silences=state.silences + 1), self.texts.text("reprompt", state.lang))

    def _hold(self, state: CallState) -> VoiceResponse:
        """A holding phrase (past the bundled ones, every other hold is a short pause) and the pickup redirect."""
        response = VoiceResponse()
        if state.holds < 3 or state.holds % 2 == 0:
            self._say_all(response, state, [self.texts.holding(state.lang, state.holds)])
        else:
            response.pause(length=1)
        response.redirect(self._url("pickup", replace(state, holds=state.holds + 1)), method="POST")
        return response

    def _listen(self, state: CallState, *lines: str) -> VoiceResponse:
        """Say the lines inside the <Gather>, so the caller may speak over them."""
        response = VoiceResponse()
        self._say_all(self._gather(response, state), state, lines)
        return response

    def _speak_then_listen(self, state: CallState, lines: list[str], prompt: str) -> VoiceResponse:
        """Say the lines in full (a number must not be cut off), then listen with a prompt."""
        response = VoiceResponse()
        self._say_all(response, state, lines)
        self._say_all(self._gather(response, state), state, [prompt])
        return response

    def _gather(self, response: VoiceResponse, state: CallState) -> Gather:
        voice = self.texts.voice(state.lang)
        return response.gather(
            input="speech",
            action=self._url("gather", state),
            method="POST",
            language=voice.language,
            speech_model=self.settings.twilio_speech_model or voice.speech_model,
            speech_timeout=self.settings.twilio_speech_timeout_s,
            timeout=self.settings.twilio_listen_s,
            action_on_empty_result=True,  # silence comes back to us, to reprompt and then say goodbye
            profanity_filter=False,  # the crisis layer and the model need the caller's own words
        )

    def _say_all(self, verb: VoiceResponse | Gather, state: CallState, lines: Sequence[str]) -> None:
        voice = self.texts.voice(state.lang)
        for line in lines:
            verb.say(xml_safe(line), voice=self.settings.twilio_voice or voice.voice, language=voice.language)

    def _url(self, route: str, state: CallState) -> str:
        """Absolute under PUBLIC_URL (which may carry a path prefix), else relative to the host Twilio called."""
        return f"{self._base}/twilio/voice/{route}?{state.query()}"

    async def _record(self, caller: Caller, action: str, **detail: str | int) -> None:
        try:
            await record(self.dialogue.db, caller, action, **detail)
        except DATABASE_ERRORS:
            log.exception("database failed recording %s for a call", action)
