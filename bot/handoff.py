"""Human handoff: operators take over a conversation, write to the user, and release it.

These functions are the whole operator workflow; the Telegram operator chat and the web console are
thin front-ends over them. Every step is written to the audit trail, in the transaction that makes
it (a take makes two: the hold, then, once the person could be told, the acknowledgement).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.alerts import Alert, OperatorAlerts
from bot.crisis.levels import Level
from bot.texts import text
from db import repo
from db.engine import DATABASE_ERRORS, Database
from db.models import Conversation, ConversationStatus, Escalation, EscalationStatus, Role, User, utcnow

log = logging.getLogger(__name__)

Sender = Callable[[str, str], Awaitable[None]]  # (external_id, text)
ACTIONS = ("take", "release", "ack", "resolve")  # what `Handoff.act` does by name
LOWER_TO = {"none": Level.NONE, "distress": Level.DISTRESS, "concern": Level.CONCERN}  # a resolve may lower to


class Status(StrEnum):
    DONE = "done"
    NOT_FOUND = "not_found"  # no such conversation or escalation
    UNCHANGED = "unchanged"  # nothing to do: not held, or the escalation is already past that step
    HELD_BY_OTHER = "held_by_other"  # another operator holds the person; they release first
    UNREACHABLE = "unreachable"  # the person's channel cannot carry an operator's words


class Refused(Exception):
    """A channel would not deliver an operator's words. Its message says why and holds nothing of
    the person's (no number, no text), so operators may be shown it."""


@dataclass(frozen=True, slots=True)
class Step:
    """What an operator's action did, and where: the conversation acted on (an alert's may have
    ended, and the person's open one is used) and who holds it. True when it was done."""

    status: Status
    conversation_id: int | None = None
    holder: str | None = None
    reason: str | None = None  # why a person is unreachable (no words of theirs)

    def __bool__(self) -> bool:
        return self.status == Status.DONE


class Handoff:
    """Operator actions on conversations and escalations."""

    def __init__(self, db: Database, alerts: OperatorAlerts) -> None:
        self.db = db
        self.alerts = alerts
        self._senders: dict[str, Sender] = {}

    def register_sender(self, channel: str, send: Sender) -> None:
        """How to push a text to one of a channel's users (channels that can push: Telegram, SMS)."""
        self._senders[channel] = send

    def can_push(self, channel: str) -> bool:
        return channel in self._senders

    async def push(self, channel: str, external_id: str, words: str) -> bool:
        """Send `words` to a user through their channel: False when it has no sender (web chat, a call);
        a channel that refuses raises its own error."""
        send = self._senders.get(channel)
        if send is None:
            log.warning("channel %s cannot push messages", channel)
            return False
        await send(external_id, words)
        return True

    async def take(self, conversation_id: int, operator: str) -> Step:
        """The operator holds the person's open conversation: the model stays silent until release (or
        until the hold lapses, see `Dialogue`), the person is told someone from the team is with them,
        and their open escalations are acknowledged. Refused where their channel cannot carry an
        operator's words (web chat, a call with no SMS, a number withheld), since a hold there would
        only silence the bot, and while another operator holds it."""
        async with self.db.transaction() as session:
            found = await self._person(session, conversation_id, open_new=True)
            if found is None:
                return Step(Status.NOT_FOUND)
            user, conversation = found
            if not self.can_push(user.channel):
                return Step(Status.UNREACHABLE, conversation.id, reason=f"the {user.channel} channel cannot carry them")
            held_before = conversation.operator == operator
            if not await repo.hold(session, conversation.id, operator):
                holder = await session.scalar(select(Conversation.operator).where(Conversation.id == conversation.id))
                return Step(Status.HELD_BY_OTHER, conversation.id, holder)
        if not held_before:
            try:
                await self.push(user.channel, user.external_id, text("with_operator", user.locale))
            except Refused as exc:  # e.g. a caller who hid their number: no operator can reach them
                await self.release(conversation.id, operator)
                return Step(Status.UNREACHABLE, conversation.id, reason=str(exc))
            except Exception as exc:  # the take-over stands; the operator's own first message may still arrive
                log.warning(
                    "could not tell conversation %s an operator joined: %s", conversation.id, type(exc).__name__
                )
        async with self.db.transaction() as session:
            acknowledged = await repo.acknowledge_open_escalations(session, user.id, operator)
            await repo.audit(
                session,
                user_id=user.id,
                conversation_id=conversation.id,
                escalation_id=acknowledged[-1] if acknowledged else None,
                actor=operator,
                action="take",
                level=Level(conversation.risk_level).name.lower(),
            )
        return Step(Status.DONE, conversation.id, operator)

    async def release(self, conversation_id: int, operator: str) -> Step:
        """Hand the person's open conversation back to the bot (any operator may: the audit names who)."""
        async with self.db.transaction() as session:
            found = await self._person(session, conversation_id, open_new=False)
            if found is None:
                return Step(Status.NOT_FOUND)
            user, conversation = found
            if conversation is None or conversation.operator is None:
                return Step(Status.UNCHANGED, conversation.id if conversation else conversation_id)
            holder, conversation.operator = conversation.operator, None
            await repo.audit(
                session,
                user_id=user.id,
                conversation_id=conversation.id,
                actor=operator,
                action="release",
                holder=holder,
            )
        return Step(Status.DONE, conversation.id)

    async def say(self, conversation_id: int, operator: str, words: str) -> Step:
        """Deliver an operator's message through the person's own channel, then store it in their
        open conversation, which the operator then holds (another operator's hold stands).

        Delivery comes first so that a message the channel refused (a number that texted STOP, say)
        is never recorded as said; whatever stops delivery reaches the caller as `Refused`.
        """
        if not words.strip():
            return Step(Status.UNCHANGED, conversation_id)
        async with self.db.transaction() as session:
            found = await self._person(session, conversation_id, open_new=False)
        if found is None:
            return Step(Status.NOT_FOUND)
        user = found[0]
        if not self.can_push(user.channel):
            return Step(Status.UNREACHABLE, conversation_id, reason=f"the {user.channel} channel cannot carry them")
        try:
            await self.push(user.channel, user.external_id, words)
        except Refused:
            raise
        except Exception as exc:  # a network failure, say: the front-end tells the operator it did not go
            raise Refused(f"the {user.channel} channel failed ({type(exc).__name__})") from exc
        async with self.db.transaction() as session:
            current = await repo.open_conversation(session, user.id)
            holder = await repo.operator_wrote(session, current.id, operator)  # an operator who writes holds it
            await repo.add_message(session, current, Role.OPERATOR, words)
            await repo.audit(
                session, user_id=user.id, conversation_id=current.id, actor=operator, action="operator_message"
            )
        return Step(Status.DONE, current.id, holder)

    @staticmethod
    async def _person(
        session: AsyncSession, conversation_id: int, *, open_new: bool
    ) -> tuple[User, Conversation | None] | None:
        """The person a conversation id names, with their open conversation: an alert's conversation
        may have ended since (a call hung up, a /reset), and operators act on the person's current
        one. With `open_new`, one is opened when they have none. None when there is no such person."""
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            return None
        user = await session.get_one(User, conversation.user_id)
        if conversation.status != ConversationStatus.OPEN:
            opened = repo.open_conversation if open_new else repo.current_conversation
            conversation = await opened(session, user.id)
        return user, conversation

    async def request_human(self, channel: str, external_id: str) -> int | None:
        """The user asked for a person: open (or reuse) an escalation and alert operators."""
        async with self.db.transaction() as session:
            user = await repo.get_or_create_user(session, channel, external_id)
            conversation = await repo.open_conversation(session, user.id)
            escalation = await repo.active_escalation(session, conversation.id)
            if escalation is None:
                escalation = await repo.open_escalation(
                    session, conversation, None, level=conversation.risk_level, reason="user asked for a person"
                )
            await repo.record_alert(session, escalation, actor="user", action="human_requested")
            alert = Alert(
                "human_requested",
                user.id,
                conversation.id,
                escalation.id,
                Level(conversation.risk_level).name.lower(),
                channel,
                "",
            )
        await self.alerts.send(alert)
        return alert.escalation_id

    async def act(self, action: str, target: int, operator: str, lower_to: Level | None = None) -> Step:
        """An operator command by name, as the front-ends offer them: "take" and "release" name a
        conversation, "ack" and "resolve" an escalation (which may lower the level to `lower_to`)."""
        match action:
            case "take":
                return await self.take(target, operator)
            case "release":
                return await self.release(target, operator)
            case "ack":
                return await self.acknowledge(target, operator)
            case "resolve":
                return await self.resolve(target, operator, lower_to)
        raise ValueError(f"unknown operator action {action!r}")

    async def acknowledge(self, escalation_id: int, operator: str) -> Step:
        return await self._set_status(escalation_id, operator, EscalationStatus.ACKNOWLEDGED)

    async def resolve(self, escalation_id: int, operator: str, lower_to: Level | None = None) -> Step:
        """Close an escalation; only here can the conversation's sticky risk level go down."""
        return await self._set_status(escalation_id, operator, EscalationStatus.RESOLVED, lower_to)

    async def _set_status(
        self, escalation_id: int, operator: str, status: EscalationStatus, lower_to: Level | None = None
    ) -> Step:
        """Move an escalation forward (open, acknowledged, resolved), never back: a late /ack must not
        reopen what a colleague resolved, nor take the resolution's name off it."""
        async with self.db.transaction() as session:
            moved = await repo.advance_escalation(session, escalation_id, status, operator)
            if moved is None:
                escalation = await session.get(Escalation, escalation_id)
                if escalation is None:
                    return Step(Status.NOT_FOUND)
                return Step(Status.UNCHANGED, escalation.conversation_id, escalation.operator)
            detail: dict[str, object] = {"status": str(status)}
            if lower_to is not None:
                conversation = await session.get_one(Conversation, moved.conversation_id)
                conversation.risk_level = min(conversation.risk_level, int(lower_to))
                detail["level_lowered_to"] = lower_to.name.lower()
            await repo.audit(
                session,
                user_id=moved.user_id,
                conversation_id=moved.conversation_id,
                escalation_id=escalation_id,
                actor=operator,
                action=str(status),
                **detail,
            )
        return Step(Status.DONE, moved.conversation_id, operator)

    async def realert_overdue(self, older_than_s: float) -> int:
        """Alert again about every escalation still open (unacknowledged) after `older_than_s`."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        alerts: list[Alert] = []
        async with self.db.transaction() as session:
            overdue = await session.scalars(
                select(Escalation).where(
                    Escalation.status == EscalationStatus.OPEN,
                    (Escalation.last_alert_at.is_(None) & (Escalation.created_at < cutoff))
                    | (Escalation.last_alert_at < cutoff),
                )
            )
            for escalation in overdue:
                user = await session.get_one(User, escalation.user_id)
                await repo.record_alert(
                    session, escalation, actor="system", action="realert", alert_count=escalation.alert_count + 1
                )
                level = Level(escalation.level).name.lower()
                alerts.append(
                    Alert("realert", user.id, escalation.conversation_id, escalation.id, level, user.channel, "")
                )
        for alert in alerts:
            await self.alerts.send(alert)
        return len(alerts)

    async def run_realerts(self, interval_s: float, older_than_s: float) -> None:
        """Background loop: re-alert unacknowledged escalations until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.realert_overdue(older_than_s)
            except DATABASE_ERRORS:
                log.exception("re-alert pass failed; trying again in %.0fs", interval_s)
