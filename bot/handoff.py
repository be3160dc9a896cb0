"""Human handoff: operators take over a conversation, write to the user, and release it.

These functions are the whole operator workflow; the Telegram operator chat and the web console are
thin front-ends over them. Every step is written to the audit trail in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select

from bot.alerts import Alert, OperatorAlerts
from bot.crisis.levels import Level
from bot.texts import text
from db import repo
from db.engine import DATABASE_ERRORS, Database
from db.models import Conversation, Escalation, EscalationStatus, Role, User, utcnow

log = logging.getLogger(__name__)

Sender = Callable[[str, str], Awaitable[None]]  # (external_id, text)


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

    async def take(self, conversation_id: int, operator: str) -> bool:
        """The operator holds the conversation: the model stays silent until release, and the person
        is told that someone from the team is with them now (where their channel can push)."""
        async with self.db.transaction() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                return False
            user = await session.get_one(User, conversation.user_id)
            conversation.operator, conversation.taken_over_at = operator, utcnow()
            escalation = await repo.active_escalation(session, conversation_id)
            if escalation is not None and escalation.status == EscalationStatus.OPEN:
                escalation.status, escalation.operator = EscalationStatus.ACKNOWLEDGED, operator
                escalation.acknowledged_at = utcnow()
            await repo.audit(
                session,
                user_id=conversation.user_id,
                conversation_id=conversation_id,
                escalation_id=escalation.id if escalation else None,
                actor=operator,
                action="take",
                level=Level(conversation.risk_level).name.lower(),
            )
        send = self._senders.get(user.channel)
        if send is not None:
            try:
                await send(user.external_id, text("with_operator", user.locale))
            except Exception as exc:  # the take-over stands; the operator's own first message may still arrive
                log.warning("could not tell conversation %s that an operator joined: %s", conversation_id, exc)
        return True

    async def release(self, conversation_id: int, operator: str) -> bool:
        """Hand the conversation back to the bot."""
        async with self.db.transaction() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None or conversation.operator is None:
                return False
            conversation.operator = None
            await repo.audit(
                session, user_id=conversation.user_id, conversation_id=conversation_id, actor=operator, action="release"
            )
        return True

    async def say(self, conversation_id: int, operator: str, words: str) -> bool:
        """Deliver an operator's message through the user's own channel, then store it.

        Delivery comes first so that a message the channel refused (a number that texted STOP, say)
        is never recorded as said; the channel's sender raises to refuse, and that error reaches the caller.
        """
        if not words.strip():
            return False
        async with self.db.transaction() as session:
            conversation = await session.get(Conversation, conversation_id)
            user = await session.get(User, conversation.user_id) if conversation else None
        if conversation is None or user is None:
            return False
        if not await self.push(user.channel, user.external_id, words):  # a refusal raises to the operator's
            return False  # front-end, and nothing is stored
        async with self.db.transaction() as session:
            current = await session.get_one(Conversation, conversation_id)
            if current.operator is None:  # an operator who writes holds the conversation: the model stops
                current.operator, current.taken_over_at = operator, utcnow()
            await repo.add_message(session, current, Role.OPERATOR, words)
            await repo.audit(
                session, user_id=user.id, conversation_id=conversation_id, actor=operator, action="operator_message"
            )
        return True

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

    async def acknowledge(self, escalation_id: int, operator: str) -> bool:
        return await self._set_status(escalation_id, operator, EscalationStatus.ACKNOWLEDGED)

    async def resolve(self, escalation_id: int, operator: str, lower_to: Level | None = None) -> bool:
        """Close an escalation; only here can the conversation's sticky risk level go down."""
        return await self._set_status(escalation_id, operator, EscalationStatus.RESOLVED, lower_to)

    async def _set_status(
        self, escalation_id: int, operator: str, status: EscalationStatus, lower_to: Level | None = None
    ) -> bool:
        async with self.db.transaction() as session:
            escalation = await session.get(Escalation, escalation_id)
            if escalation is None:
                return False
            escalation.status, escalation.operator = status, operator
            if status == EscalationStatus.ACKNOWLEDGED:
                escalation.acknowledged_at = utcnow()
            else:
                escalation.resolved_at = utcnow()
            detail: dict[str, object] = {"status": str(status)}
            if lower_to is not None:
                conversation = await session.get_one(Conversation, escalation.conversation_id)
                conversation.risk_level = min(conversation.risk_level, int(lower_to))
                detail["level_lowered_to"] = lower_to.name.lower()
            await repo.audit(
                session,
                user_id=escalation.user_id,
                conversation_id=escalation.conversation_id,
                escalation_id=escalation.id,
                actor=operator,
                action=str(status),
                **detail,
            )
        return True

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
