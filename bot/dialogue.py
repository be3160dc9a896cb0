"""The turn: what every channel does with one user message, independent of any channel.

1. Store the message (idempotent on the channel's message id) and queue behind the user's earlier ones.
2. Ask the crisis layer; at risk, answer with the safe reply, open an escalation, alert operators.
3. Otherwise ask the model with persona and recent history, and check its words; meanwhile the
   crisis layer's slow components take a second look, and a late "at risk" still sends the safe reply.
4. Store the reply in one transaction. Any failure still gives the user an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot import metrics
from bot.alerts import Alert, OperatorAlerts, excerpt
from bot.crisis.levels import Assessment, Level
from bot.safety import SafeReply, Safety, Screening
from bot.settings import Settings
from bot.texts import builtin_personas, text
from db import repo
from db.engine import DATABASE_ERRORS, Database
from db.models import Conversation, ConversationStatus, MessageStatus, Role, User, utcnow
from db.repo import ConversationState, Pending, Person
from inference.api import BackendError, ChatBackend, ChatMessage, Completion, GenerationParams

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # rough budget estimate; the backend cuts exactly with its tokenizer
RECENT_USER_TURNS = 3  # earlier user messages the crisis layer reads as context
_POLL_FIRST_S, _POLL_MAX_S = 0.005, 0.1
_LOOK_EVERY_S = 1.0  # how often a queued message checks it is still queued (see _wait_for_turn)

# A call, or a channel that cannot take a late safe reply, waits this long for a slow crisis check.
UNPUSHABLE_WAIT_S = 5.0
EXCERPT_CHARS = 200  # of a person's words in an alert to every operator
OPERATOR_READS = 4000  # the operator holding a conversation reads the whole message (up to one Telegram message)


class Pusher(Protocol):
    """Sends a text to a person outside a turn (`bot.handoff.Handoff` implements it)."""

    def can_push(self, channel: str) -> bool: ...

    async def push(self, channel: str, external_id: str, words: str) -> bool: ...


class Outcome(StrEnum):
    MODEL = "model"  # the model's reply
    CRISIS = "crisis"  # the crisis layer's safe reply
    FALLBACK = "fallback"  # the model failed; a fixed apology
    FILTERED = "filtered"  # the model's reply was unsafe and replaced
    OPERATOR = "operator"  # an operator holds the conversation; no bot reply
    EMPTY = "empty"  # nothing to read
    TOO_LONG = "too_long"
    FORGOTTEN = "forgotten"  # the person deleted their data while the message waited its turn; no reply


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from a person, as a channel hands it over."""

    channel: str
    external_id: str
    text: str
    channel_message_id: str | None = None
    locale: str | None = None
    contact: str | None = None  # a phone number; stored encrypted when a key is set
    call: bool = False  # a live call: it cannot be answered later, and a crisis turn transfers it


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What the channel sends back: `reply` is None when an operator answers instead."""

    reply: str | None
    outcome: Outcome
    level: Level = Level.NONE
    duplicate: bool = False  # a redelivery: the channel must not send the reply again
    message_id: int | None = None
    reply_id: int | None = None
    escalation_id: int | None = None
    assessment: Assessment | None = field(default=None, compare=False)


class _Turn(NamedTuple):
    """A claimed message with everything needed to answer it."""

    message: Pending
    user: Person
    conversation: ConversationState
    earlier: list[Row[Any]]  # (role, text) of the finished messages before it, oldest first
    persona: list[str]


class _Queued(NamedTuple):
    """A stored message behind the same person's earlier ones."""

    message: Pending
    user: Person


class Dialogue:
    """The channel-agnostic conversation core shared by Telegram, phone, SMS, web and terminal."""

    def __init__(
        self,
        db: Database,
        backend: ChatBackend | None,
        safety: Safety,
        settings: Settings,
        alerts: OperatorAlerts | None = None,
        pusher: Pusher | None = None,
    ) -> None:
        self.db = db
        self.backend = backend
        self.safety = safety
        self.settings = settings
        self.alerts = alerts or OperatorAlerts()
        self.pusher = pusher  # sends a late safe reply; without it operators are still alerted
        self._late: set[asyncio.Task[None]] = set()  # late crisis replies being sent
        self._lease = timedelta(seconds=settings.turn_lease_s)
        self.default_persona = builtin_personas()[0].key
        self._personas: dict[int | str, list[str]] = {}  # filled on first use; built-ins change only at start

    # --- the turn ---------------------------------------------------------------------------

    async def handle(self, incoming: Incoming) -> TurnResult:
        """Answer one message; never raises for a database or model failure."""
        started = time.perf_counter()
        metrics.TURNS_IN_FLIGHT.inc()
        try:
            result = await self._handle(incoming)
        finally:
            metrics.TURNS_IN_FLIGHT.dec()
        metrics.TURNS.labels(incoming.channel, result.outcome).inc()
        metrics.TURN_SECONDS.labels(incoming.channel).observe(time.perf_counter() - started)
        return result

    async def _handle(self, incoming: Incoming) -> TurnResult:
        body = incoming.text.strip()
        if not body:
            return TurnResult(text("empty", incoming.locale), Outcome.EMPTY)
        if len(body) > self.settings.max_message_chars:
            return await self._too_long(incoming, body)
        try:
            turn = await self._receive(incoming, body)
        except repo.DuplicateMessage as duplicate:
            return await self._redelivered(duplicate.message_id, incoming)
        except DATABASE_ERRORS:
            metrics.DB_ERRORS.labels("receive").inc()
            log.exception("database failed storing an incoming %s message", incoming.channel)
            return await self.answer_unstored(incoming)
        if isinstance(turn, _Queued):  # behind the same user's earlier messages
            queued = turn
            try:
                turn = await self._wait_for_turn(queued)
            except DATABASE_ERRORS:
                metrics.DB_ERRORS.labels("queue").inc()
                log.exception("database failed while message %s waited for its turn", queued.message.id)
                return await self.answer_unstored(incoming)
            if turn is None:  # deleted meanwhile, or a redelivery took the turn over (it sends the reply)
                return await self._redelivered(queued.message.id, incoming)
        return await self._respond(turn, incoming.call)

    async def _receive(self, incoming: Incoming, body: str) -> _Turn | _Queued:
        """Store the message; when nothing of this user's is ahead of it, claim it and load its context
        in the same transaction (the common case costs one transaction before the model is asked)."""
        async with self.db.begin() as conn:
            user, message, conversation = await repo.receive(
                conn,
                incoming.channel,
                incoming.external_id,
                body,
                incoming.channel_message_id,
                self._lease,
                locale=incoming.locale,
                contact=incoming.contact,
            )
            if conversation is None:
                return _Queued(message, user)
            return await self._context(conn, message, user, conversation)

    async def _wait_for_turn(self, queued: _Queued) -> _Turn | None:
        """Poll until every earlier message of this user is finished (the order lives in the database,
        so it holds across bot replicas), then claim this one. None when it is no longer queued: the
        person deleted their data, or a redelivery took over a wait that outlived the lease (looked
        at about once a second, so a long queue under load does not double its polling queries)."""
        delay, waited, looked = _POLL_FIRST_S, 0.0, 0.0
        while True:
            await asyncio.sleep(delay)
            waited += delay
            async with self.db.begin() as conn:
                conversation = await repo.claim(conn, queued.message, self._lease)
                if conversation is not None:
                    return await self._context(conn, queued.message, queued.user, conversation)
                if waited - looked >= _LOOK_EVERY_S:
                    looked = waited
                    if await repo.message_status(conn, queued.message.id) != MessageStatus.PENDING:
                        return None
            delay = min(delay * 2, _POLL_MAX_S)

    async def _context(
        self, conn: AsyncConnection, message: Pending, user: Person, conversation: ConversationState
    ) -> _Turn:
        earlier = await repo.history(conn, message, max(self.settings.history_turns, RECENT_USER_TURNS * 2))
        return _Turn(message, user, conversation, earlier, await self._persona(conn, user))

    async def _persona(self, conn: AsyncConnection, user: Person) -> list[str]:
        """The lines the model speaks as: the user's own, their chosen persona, or the default."""
        if user.persona_lines:
            return list(user.persona_lines)
        if not self._personas:
            self._personas = await repo.persona_table(conn)
        chosen = self._personas.get(user.persona_id) if user.persona_id is not None else None
        return chosen or self._personas.get(self.default_persona, [])

    async def _respond(self, turn: _Turn, call: bool) -> TurnResult:
        message, user, conversation, earlier, persona = turn
        recent = [m.text for m in earlier if m.role == Role.USER][-RECENT_USER_TURNS:]
        screening = await self.safety.screen(message.text, recent)
        assessment = screening.assessment
        metrics.ASSESSMENTS.labels(assessment.level.name.lower()).inc()
        level = max(assessment.level, Level(conversation.risk_level))

        # At risk, the safe words go out even while an operator holds the conversation: the operator
        # may be away, and a call can only be transferred from here. The operator reads it all.
        if assessment.level >= Level.CONCERN:
            return await self._crisis(message, conversation, user, assessment, level)
        if conversation.operator is not None and not await self._hold_lapsed(conversation, user):
            return await self._to_operator(message, conversation, user, screening, level, call)
        return await self._model_reply(message, conversation, user, persona, earlier, screening, level, call)

    async def _hold_lapsed(self, conversation: ConversationState, user: Person) -> bool:
        """Whether the operator holding the conversation has been silent past HANDOFF_IDLE_S: then the
        hold ends, operators are told, the person hears that the bot answers again, and it does. A hold
        nobody keeps would otherwise leave the person writing into silence. False when the database
        cannot say (the hold stands: the operator still sees the message)."""
        idle_since = utcnow() - timedelta(seconds=self.settings.handoff_idle_s)
        try:
            async with self.db.transaction() as session:
                holder = await repo.lapse_hold(session, conversation.id, idle_since)
                person = await session.get(User, user.id) if holder else None
                if holder is None or person is None:
                    return False
                await repo.audit(
                    session,
                    user_id=user.id,
                    conversation_id=conversation.id,
                    actor="system",
                    action="hold_lapsed",
                    holder=holder,
                )
        except DATABASE_ERRORS:
            metrics.DB_ERRORS.labels("hold").inc()
            log.exception("database failed checking the hold on conversation %s", conversation.id)
            return False
        log.info("conversation %s: its operator was silent too long, the bot answers again", conversation.id)
        level = Level(conversation.risk_level)
        await self._alert("hold_lapsed", user.id, conversation.id, None, level, user.channel, "", None)
        await self._push(user.channel, person.external_id, text("operator_away", user.locale), "operator away")
        return True

    async def _second_look(
        self, screening: Screening, message: Pending, conversation: ConversationState, user: Person, call: bool
    ) -> Assessment | None:
        """The slow crisis components' verdict when it comes within the wait; a later one is acted on when it
        comes. A real model's reply takes longer than a check, so a ready reply waits only for a check that
        is running (not one queued behind others: under load every reply would wait in vain). A call (a
        crisis turn transfers it) and a channel that cannot take a late safe reply wait longer, queued or not."""
        pending = screening.second_look
        if pending is None:
            return None
        if call or not self._can_push(user.channel):
            await asyncio.wait([pending], timeout=UNPUSHABLE_WAIT_S)
        elif not pending.done() and not screening.queued:
            await asyncio.wait([pending], timeout=self.settings.crisis_second_look_wait_s)
        if pending.done():  # cancelled: the service is closing
            return None if pending.cancelled() else pending.result()
        metrics.SECOND_LOOKS.labels("late").inc()
        pending.add_done_callback(lambda done: self._late_verdict(done, message, conversation, user))
        return None

    def _can_push(self, channel: str) -> bool:
        return self.pusher is not None and self.pusher.can_push(channel)

    async def _push(self, channel: str, external_id: str, words: str, what: str) -> bool:
        """Send `words` outside a turn; whether the channel took them. A failure is logged by kind only:
        the turn's own work (alerts, the reply) is done either way."""
        if self.pusher is None or not self.pusher.can_push(channel):
            return False
        try:
            return await self.pusher.push(channel, external_id, words)
        except Exception as exc:  # noqa: BLE001 - each channel raises its own errors
            log.warning("%s not delivered on %s: %s", what, channel, type(exc).__name__)
            return False

    def _late_verdict(
        self, done: asyncio.Future[Assessment | None], message: Pending, conversation: ConversationState, user: Person
    ) -> None:
        verdict = None if done.cancelled() else done.result()
        if verdict is not None and verdict.level >= Level.CONCERN:
            task = asyncio.get_running_loop().create_task(self._late_crisis(message, conversation, user, verdict))
            self._late.add(task)
            task.add_done_callback(self._late.discard)

    # --- the three ways a turn ends ---------------------------------------------------------

    async def _model_reply(
        self,
        message: Pending,
        conversation: ConversationState,
        user: Person,
        persona: list[str],
        earlier: Sequence[Row[Any]],
        screening: Screening,
        level: Level,
        call: bool,
    ) -> TurnResult:
        assessment = screening.assessment
        started = time.perf_counter()
        outcome, model_name = Outcome.MODEL, None
        try:
            completion = await self._complete(persona, earlier[-self.settings.history_turns :], message.text)
            reply, model_name = completion.text.strip(), completion.model
            if not reply:
                outcome, reply = Outcome.FALLBACK, text("fallback", user.locale)
            elif reason := self.safety.filter_reply(reply):
                log.warning("output filter replaced the model's reply to message %s: %s", message.id, reason)
                outcome, reply = Outcome.FILTERED, text("filtered", user.locale)
        except BackendError as exc:
            log.warning("inference backend failed for message %s: %s", message.id, type(exc).__name__)
            outcome, reply = Outcome.FALLBACK, text("fallback", user.locale)
        latency_ms = int((time.perf_counter() - started) * 1000)
        metrics.MODEL_SECONDS.observe(latency_ms / 1000)
        second = await self._second_look(screening, message, conversation, user, call)
        if second is not None and second.level >= Level.CONCERN:
            return await self._crisis(message, conversation, user, second, max(level, second.level))
        if level >= Level.CONCERN:
            # The conversation is still at risk: keep the way to a person in view, whatever answered.
            reply = f"{reply}\n\n{self.safety.safe_reply(assessment, user.locale, user.country).text}"
        try:
            async with self.db.autocommit() as conn:
                reply_id = await repo.answer(
                    conn,
                    message,
                    reply,
                    assessed=int(assessment.level),
                    model=model_name,
                    latency_ms=latency_ms,
                    risk_level=int(level),
                )
        except DATABASE_ERRORS:
            return await self._store_failed(message, reply, outcome, level, assessment.level)
        return TurnResult(reply, outcome, level, message_id=message.id, reply_id=reply_id, assessment=assessment)

    async def _complete(self, persona: list[str], earlier: Sequence[Row[Any]], latest: str) -> Completion:
        if self.backend is None:
            raise BackendError("no inference backend is configured")
        room = self.settings.context_tokens * CHARS_PER_TOKEN
        # The model reads a prompt cut from the left to its budget; sending more would only risk a
        # backend's own length limit (our worker's is 8000 characters a message), so a long message
        # goes as its newest part. It is stored whole.
        latest = latest[-room:]
        budget = room - len(latest)
        turns: list[ChatMessage] = []
        for old in reversed(earlier):
            budget -= len(old.text)
            if budget < 0:
                break
            turns.append(ChatMessage("user" if old.role == Role.USER else "assistant", old.text))
        messages = [ChatMessage("system", line) for line in persona]
        messages += reversed(turns)
        messages.append(ChatMessage("user", latest))
        params = GenerationParams(max_tokens=self.settings.max_new_tokens)
        try:
            async with asyncio.timeout(self.settings.reply_timeout_s):  # no task of its own, unlike wait_for
                return await self.backend.complete(messages, params)
        except TimeoutError as exc:
            raise BackendError(f"no reply within {self.settings.reply_timeout_s}s") from exc

    async def _crisis(
        self, message: Pending, conversation: ConversationState, user: Person, assessment: Assessment, level: Level
    ) -> TurnResult:
        safe = self.safety.safe_reply(assessment, user.locale, user.country)
        try:
            async with self.db.transaction() as session:
                reply_id = await repo.answer(
                    await session.connection(),
                    message,
                    safe.text,
                    assessed=int(assessment.level),
                    risk_level=int(level),
                )
                escalation_id = await self._escalate(session, conversation.id, message.id, level, assessment, safe)
        except DATABASE_ERRORS:
            metrics.DB_ERRORS.labels("crisis").inc()
            log.exception("database failed recording the crisis turn of message %s", message.id)
            await self._alert(
                "escalation", user.id, conversation.id, None, level, user.channel, message.text, assessment
            )
            await self._mark_failed(message, level)
            return TurnResult(safe.text, Outcome.CRISIS, level, message_id=message.id, assessment=assessment)
        await self._alert(
            "escalation",
            user.id,
            conversation.id,
            escalation_id,
            level,
            user.channel,
            message.text,
            assessment,
            limit=OPERATOR_READS if conversation.operator is not None else EXCERPT_CHARS,
        )
        return TurnResult(
            safe.text,
            Outcome.CRISIS,
            level,
            message_id=message.id,
            reply_id=reply_id,
            escalation_id=escalation_id,
            assessment=assessment,
        )

    async def _late_crisis(
        self, message: Pending, conversation: ConversationState, user: Person, assessment: Assessment
    ) -> None:
        """The slow components flagged a message after its reply went out: escalate, alert operators, and
        send the safe reply through the user's channel (stored once the channel took it). If the person
        deleted their data meanwhile, nothing of theirs goes out, to operators or anyone."""
        level = assessment.level
        safe = self.safety.safe_reply(assessment, user.locale, user.country)
        escalation_id, external_id = None, None
        try:
            async with self.db.transaction() as session:
                person = await session.get(User, user.id)
                if person is None:
                    log.info("late crisis verdict on message %s came after the person deleted their data", message.id)
                    return
                external_id = person.external_id
                escalation_id = await self._escalate(
                    session, conversation.id, message.id, level, assessment, safe, action="late_safe_reply"
                )
        except DATABASE_ERRORS:
            metrics.DB_ERRORS.labels("late_crisis").inc()
            log.exception("could not record the late crisis verdict on message %s", message.id)
        await self._alert(
            "escalation", user.id, conversation.id, escalation_id, level, user.channel, message.text, assessment
        )
        if external_id is None or not await self._push(user.channel, external_id, safe.text, "late safe reply"):
            return
        try:
            async with self.db.transaction() as session:
                current = await session.get(Conversation, conversation.id)
                if current is not None:
                    await repo.add_message(session, current, Role.BOT, safe.text)
        except DATABASE_ERRORS:
            log.exception("the late safe reply for message %s was sent but not stored", message.id)

    async def _escalate(
        self,
        session: AsyncSession,
        conversation_id: int,
        message_id: int,
        level: Level,
        assessment: Assessment,
        safe: SafeReply,
        action: str = "safe_reply",
    ) -> int:
        """Raise the conversation's level and open (or raise) its escalation, on the audit trail; its id."""
        reason = _reason(assessment)
        current = await session.get_one(Conversation, conversation_id)
        current.risk_level = max(current.risk_level, int(level))
        escalation = await repo.active_escalation(session, conversation_id)
        if escalation is None:
            escalation = await repo.open_escalation(
                session, current, message_id, level=int(level), reason=reason, helpline_shown=safe.helplines_shown
            )
            metrics.ESCALATIONS.labels(level.name.lower()).inc()
        else:
            escalation.level = max(escalation.level, int(level))
        await repo.record_alert(
            session,
            escalation,
            actor="crisis-layer",
            action=action,
            level=level.name.lower(),
            reason=reason,
            helplines=safe.helplines_shown,
        )
        return escalation.id

    async def _to_operator(
        self,
        message: Pending,
        conversation: ConversationState,
        user: Person,
        screening: Screening,
        level: Level,
        call: bool,
    ) -> TurnResult:
        """An operator holds the conversation: the model stays silent and the operator sees the message.
        The crisis layer's slow components still read it, as on any turn."""
        second = await self._second_look(screening, message, conversation, user, call)
        if second is not None and second.level >= Level.CONCERN:
            return await self._crisis(message, conversation, user, second, max(level, second.level))
        try:
            async with self.db.transaction() as session:
                await repo.finish(session, message.id, MessageStatus.ANSWERED, int(level))
        except DATABASE_ERRORS:
            metrics.DB_ERRORS.labels("operator").inc()
            log.exception("database failed marking message %s as passed to an operator", message.id)
        # The operator reads the whole message, not an excerpt.
        await self._alert(
            "user_message", user.id, conversation.id, None, level, user.channel, message.text, None, OPERATOR_READS
        )
        return TurnResult(None, Outcome.OPERATOR, level, message_id=message.id)

    # --- failures and redeliveries ----------------------------------------------------------

    async def _too_long(self, incoming: Incoming, body: str) -> TurnResult:
        """Too long to store or answer, yet still screened (its beginning and end, the most that is read):
        at risk, the safe reply and an alert; otherwise a request to send it in parts."""
        half = self.settings.max_message_chars // 2
        screened = await self.answer_unstored(replace(incoming, text=f"{body[:half]}\n{body[-half:]}"))
        if screened.outcome == Outcome.CRISIS:
            return screened
        return TurnResult(text("too_long", incoming.locale), Outcome.TOO_LONG, screened.level)

    async def answer_unstored(self, incoming: Incoming) -> TurnResult:
        """A message that is not stored (the database is down, or an SMS texter opted out): the crisis
        layer still screens it, answers with safe words and alerts operators; otherwise the person is
        told, truthfully, that it was not kept and to write again."""
        body = incoming.text.strip()
        assessment = await asyncio.to_thread(self.safety.assess, body, ())
        if assessment.level >= Level.CONCERN:
            safe = self.safety.safe_reply(assessment, incoming.locale, None)
            await self._alert("escalation", None, None, None, assessment.level, incoming.channel, body, assessment)
            return TurnResult(safe.text, Outcome.CRISIS, assessment.level, assessment=assessment)
        return TurnResult(text("unsaved", incoming.locale), Outcome.FALLBACK, assessment.level, assessment=assessment)

    async def _store_failed(
        self, message: Pending, reply: str, outcome: Outcome, level: Level, assessed: Level
    ) -> TurnResult:
        """The message is marked failed with its own assessed level (a pickup of it replays a crisis
        only if it was one, not because the conversation once was)."""
        metrics.DB_ERRORS.labels("reply").inc()
        log.exception("database failed storing the reply to message %s", message.id)
        await self._mark_failed(message, assessed)
        return TurnResult(reply, outcome, level, message_id=message.id)

    async def _mark_failed(self, message: Pending, level: Level) -> None:
        """The message stays, marked failed, so it no longer holds up the person's next one."""
        try:
            async with self.db.transaction() as session:
                await repo.finish(session, message.id, MessageStatus.FAILED, int(level))
        except DATABASE_ERRORS:
            log.warning("could not mark message %s as failed; its lease will expire", message.id)

    async def _redelivered(self, message_id: int, incoming: Incoming) -> TurnResult:
        """The same channel message again: wait for the first delivery's turn and return it, marked
        duplicate (its channel sent the reply). If the process holding the turn died (a crash, a
        restart mid-turn: the very reason a channel redelivers) and its lease ran out, take the turn
        over and answer it here, so the message is not left unanswered."""
        delay = _POLL_FIRST_S
        deadline = time.monotonic() + self._lease.total_seconds() + 1.0  # the holder's lease ends within one lease
        while time.monotonic() < deadline:
            try:
                async with self.db.transaction() as session:
                    finished = await self._finished(session, message_id)
                if finished is not None:
                    return replace(finished, duplicate=True)
                async with self.db.begin() as conn:
                    if await repo.message_status(conn, message_id) is None:
                        return TurnResult(None, Outcome.FORGOTTEN, duplicate=True)
                    turn = None
                    if taken := await repo.take_over(conn, message_id, self._lease):
                        person, message, conversation = taken
                        turn = await self._context(conn, message, person, conversation)
            except DATABASE_ERRORS:
                break
            if turn is not None:
                log.warning("message %s was left unanswered by a stopped process; answering it now", message_id)
                return await self._respond(turn, incoming.call)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)
        return TurnResult(text("fallback", incoming.locale), Outcome.FALLBACK, duplicate=True, message_id=message_id)

    async def result_of(self, channel: str, external_id: str, channel_message_id: str) -> TurnResult | None:
        """A finished turn as the database holds it (for a channel picking a reply up later); None if not finished."""
        async with self.db.transaction() as session:
            user = await repo.find_user(session, channel, external_id)
            message = await repo.find_message(session, user.id, channel_message_id) if user else None
            return await self._finished(session, message.id) if message else None

    async def _finished(self, session: AsyncSession, message_id: int) -> TurnResult | None:
        message = await repo.get_message(session, message_id)
        if message is None or message.status not in (MessageStatus.ANSWERED, MessageStatus.FAILED):
            return None
        reply = await repo.reply_to(session, message_id)
        assessed = Level(message.risk_level or 0)
        if reply is None and message.status == MessageStatus.FAILED and assessed >= Level.CONCERN:
            # A crisis turn whose records failed: whoever picks it up (a call's next request, perhaps on
            # another replica) still gives the safe words, and a call is still transferred.
            user = await session.get_one(User, message.user_id)
            safe = self.safety.safe_reply(Assessment(assessed), user.locale, user.country)
            return TurnResult(safe.text, Outcome.CRISIS, assessed, message_id=message_id)
        if reply is None:  # an operator holds the conversation, or storing the reply failed
            outcome = Outcome.FALLBACK if message.status == MessageStatus.FAILED else Outcome.OPERATOR
            return TurnResult(None, outcome, assessed, message_id=message_id)
        outcome = Outcome.CRISIS if assessed >= Level.CONCERN else Outcome.MODEL
        level = max(assessed, Level(reply.risk_level or 0))
        return TurnResult(reply.text, outcome, level, message_id=message_id, reply_id=reply.id)

    async def _alert(
        self,
        kind: str,
        user_id: int | None,
        conversation_id: int | None,
        escalation_id: int | None,
        level: Level,
        channel: str,
        body: str,
        assessment: Assessment | None,
        limit: int = EXCERPT_CHARS,
    ) -> None:
        tags = tuple(sorted(str(t) for t in assessment.tags)) if assessment else ()
        await self.alerts.send(
            Alert(
                kind, user_id, conversation_id, escalation_id, level.name.lower(), channel, excerpt(body, limit), tags
            )
        )

    # --- commands every channel offers ------------------------------------------------------

    async def reset(self, channel: str, external_id: str) -> None:
        """Close the open conversation; the next message starts a new one with no history."""
        async with self.db.transaction() as session:
            user = await repo.find_user(session, channel, external_id)
            if user is not None:
                await repo.close_conversations(session, user.id, ConversationStatus.RESET)

    async def end_conversation(self, channel: str, external_id: str) -> None:
        """Close the open conversation (a call ended); unlike reset, the next one still sees its history."""
        async with self.db.transaction() as session:
            user = await repo.find_user(session, channel, external_id)
            if user is not None:
                await repo.close_conversations(session, user.id, ConversationStatus.CLOSED)

    async def forget(self, channel: str, external_id: str) -> bool:
        """Delete everything stored about this person. True when there was anything."""
        async with self.db.transaction() as session:
            user = await repo.find_user(session, channel, external_id)
            if user is None:
                return False
            await repo.delete_user(session, user.id)
        self.alerts.withdraw(user.id)
        return True

    async def set_persona(
        self, channel: str, external_id: str, *, key: str | None = None, lines: Sequence[str] = ()
    ) -> bool:
        """Choose a built-in persona by key, or set the user's own lines. False for an unknown key."""
        async with self.db.transaction() as session:
            user = await repo.get_or_create_user(session, channel, external_id)
            if key is not None:
                persona = await repo.persona_by_key(session, key)
                if persona is None:
                    return False
                user.persona_id, user.persona_lines = persona.id, None
            else:
                cleaned = [line.strip() for line in lines if line.strip()]
                user.persona_lines = cleaned or None
        return True

    async def answered_if_at_risk(self, incoming: Incoming) -> TurnResult | None:
        """Words a person gave the bot outside a message (their own persona lines) pass the crisis
        layer too: at risk, they are answered as a message (the safe words, an escalation) and that
        turn's result returned, so that the channel neither keeps them nor gives them to the model
        to speak. None when they are not at risk."""
        assessment = await asyncio.to_thread(self.safety.assess, incoming.text, ())
        if assessment.level < Level.CONCERN:
            return None
        return await self.handle(incoming)

    async def set_country(self, channel: str, external_id: str, country: str) -> None:
        """The country the person says they are in (ISO 3166 alpha-2; "ZZ" for one without its own
        helplines), which picks the helplines shown before anything their language suggests."""
        async with self.db.transaction() as session:
            user = await repo.get_or_create_user(session, channel, external_id)
            user.country = country

    async def set_locale(self, channel: str, external_id: str, locale: str) -> None:
        async with self.db.transaction() as session:
            user = await repo.get_or_create_user(session, channel, external_id)
            user.locale = locale


def _reason(assessment: Assessment) -> str:
    """Why an escalation was opened: rule ids and tags, never the user's words."""
    rules = ", ".join(f"{e.component}:{e.rule_id}@{e.version}" for e in assessment.evidence) or "sticky level"
    tags = ", ".join(sorted(str(t) for t in assessment.tags))
    return f"{assessment.level.name.lower()} [{tags}] {rules}" if tags else f"{assessment.level.name.lower()} {rules}"


__all__ = ["Dialogue", "Incoming", "Outcome", "SafeReply", "TurnResult"]
