"""Repository functions: every query the bot makes, each inside a session the caller's transaction owns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import (
    AuditEvent,
    Conversation,
    ConversationStatus,
    Escalation,
    EscalationStatus,
    Message,
    MessageStatus,
    Persona,
    Role,
    User,
    utcnow,
)


class DuplicateMessage(Exception):
    """The channel delivered a message we already stored (same channel message id)."""

    def __init__(self, message_id: int) -> None:
        super().__init__(f"message {message_id} was already received")
        self.message_id = message_id


# --- personas -------------------------------------------------------------------------------


async def sync_personas(session: AsyncSession, personas: Sequence[tuple[str, str, str, list[str]]]) -> None:
    """Insert or update the built-in personas (key, name, description, lines) shipped as data."""
    existing = {p.key: p for p in (await session.scalars(select(Persona))).all()}
    for key, name, description, lines in personas:
        row = existing.get(key)
        if row is None:
            session.add(Persona(key=key, name=name, description=description, lines=list(lines)))
        else:
            row.name, row.description, row.lines = name, description, list(lines)


async def list_personas(session: AsyncSession) -> list[Persona]:
    return list((await session.scalars(select(Persona).order_by(Persona.id))).all())


async def persona_by_key(session: AsyncSession, key: str) -> Persona | None:
    return await session.scalar(select(Persona).where(Persona.key == key))


async def persona_table(session: AsyncSession) -> dict[int | str, list[str]]:
    """Every built-in persona's lines by id and by key (they change only when a process starts)."""
    table: dict[int | str, list[str]] = {}
    for persona in await list_personas(session):
        table[persona.id] = table[persona.key] = list(persona.lines)
    return table


# --- users and conversations ----------------------------------------------------------------


async def find_user(session: AsyncSession, channel: str, external_id: str) -> User | None:
    return await session.scalar(select(User).where(User.channel == channel, User.external_id == external_id))


async def get_or_create_user(
    session: AsyncSession, channel: str, external_id: str, *, locale: str | None = None, contact: str | None = None
) -> User:
    """The user for a channel identity; safe against two first messages racing to create it."""
    user = await find_user(session, channel, external_id)
    if user is not None:
        if locale and not user.locale:
            user.locale = locale
        return user
    try:
        async with session.begin_nested():
            user = User(channel=channel, external_id=external_id, locale=locale, contact=contact)
            session.add(user)
    except IntegrityError:
        user = await find_user(session, channel, external_id)
        assert user is not None, "a user that violated the unique key must exist"
    return user


async def lock_user(session: AsyncSession, user_id: int) -> None:
    """Serialise one user's queue operations until the transaction ends.

    On PostgreSQL this row lock makes "store a message, then check what is ahead of it" atomic, so
    message ids are handed out in queue order; SQLite's BEGIN IMMEDIATE already serialises writers.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(User.id).where(User.id == user_id).with_for_update())


async def current_conversation(session: AsyncSession, user_id: int) -> Conversation | None:
    """The user's open conversation, if there is one."""
    return await session.scalar(
        select(Conversation).where(Conversation.user_id == user_id, Conversation.status == ConversationStatus.OPEN)
    )


async def open_conversation(session: AsyncSession, user_id: int) -> Conversation:
    """The user's open conversation, created when there is none (one open per user, by index)."""
    conversation = await current_conversation(session, user_id)
    if conversation is not None:
        return conversation
    try:
        async with session.begin_nested():
            conversation = Conversation(user_id=user_id, status=ConversationStatus.OPEN)
            session.add(conversation)
    except IntegrityError:
        conversation = await current_conversation(session, user_id)
        assert conversation is not None
    return conversation


async def close_conversations(
    session: AsyncSession, user_id: int, status: ConversationStatus = ConversationStatus.CLOSED
) -> int:
    """End the user's open conversation: CLOSED (a call ended; its history still informs the next one)
    or RESET (the person asked to start afresh; nothing before it is shown to the model again)."""
    result = await session.execute(
        update(Conversation)
        .where(Conversation.user_id == user_id, Conversation.status == ConversationStatus.OPEN)
        .values(status=status, closed_at=utcnow())
    )
    return result.rowcount or 0


async def delete_user(session: AsyncSession, user_id: int) -> None:
    """Delete the user; foreign keys cascade to every row about them."""
    await session.execute(delete(User).where(User.id == user_id))


# --- messages and the per-user turn queue ----------------------------------------------------


def _insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, which knows ON CONFLICT (both SQLite and PostgreSQL have it)."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def add_user_message(
    session: AsyncSession, user: User, conversation: Conversation, text: str, channel_message_id: str | None
) -> Message:
    """Store an incoming message as pending; raise DuplicateMessage on a redelivery.

    One INSERT … ON CONFLICT DO NOTHING RETURNING: a redelivered channel message id inserts nothing.
    The returned Message is a detached record of what was written.
    """
    values = {
        "conversation_id": conversation.id,
        "user_id": user.id,
        "role": Role.USER,
        "text": text,
        "channel_message_id": channel_message_id,
        "status": MessageStatus.PENDING,
        "created_at": utcnow(),
    }
    inserted = await session.scalar(
        _insert(session)(Message)
        .values(values)
        .on_conflict_do_nothing(index_elements=["user_id", "channel_message_id"])
        .returning(Message.id)
    )
    if inserted is None:
        existing = await find_message(session, user.id, channel_message_id or "")
        assert existing is not None, "a conflicting insert means the message exists"
        raise DuplicateMessage(existing.id)
    return Message(id=inserted, **values)


async def find_message(session: AsyncSession, user_id: int, channel_message_id: str) -> Message | None:
    """A user's message by the id its channel gave it."""
    return await session.scalar(
        select(Message).where(Message.user_id == user_id, Message.channel_message_id == channel_message_id)
    )


async def claim_turn(session: AsyncSession, message: Message, lease: timedelta) -> bool:
    """Mark the message as being answered, unless an earlier message of the same user is unfinished.

    Turns of one user run in message-id order across all processes. A message whose turn was
    claimed (or queued) longer than `lease` ago belongs to a process that died; it stops blocking.
    """
    cutoff = utcnow() - lease
    earlier = aliased(Message)
    ahead = (
        select(earlier.id)
        .where(
            earlier.user_id == message.user_id,
            earlier.role == Role.USER,
            earlier.id < message.id,
            or_(
                (earlier.status == MessageStatus.PROCESSING) & (earlier.claimed_at > cutoff),
                (earlier.status == MessageStatus.PENDING) & (earlier.created_at > cutoff),
            ),
        )
        .exists()
    )
    claimed = await session.scalar(
        update(Message)
        .where(Message.id == message.id, ~ahead)
        .values(status=MessageStatus.PROCESSING, claimed_at=utcnow())
        .returning(Message.id)
    )
    return claimed is not None


async def finish(session: AsyncSession, message_id: int, status: MessageStatus, risk_level: int | None) -> None:
    await session.execute(update(Message).where(Message.id == message_id).values(status=status, risk_level=risk_level))


async def get_message(session: AsyncSession, message_id: int) -> Message | None:
    return await session.get(Message, message_id)


async def reply_to(session: AsyncSession, message_id: int) -> Message | None:
    """The bot's (or an operator's) reply to a user message."""
    return await session.scalar(select(Message).where(Message.reply_to_id == message_id).order_by(Message.id).limit(1))


async def add_reply(
    session: AsyncSession,
    to: Message,
    text: str,
    *,
    role: Role = Role.BOT,
    model: str | None = None,
    latency_ms: int | None = None,
    risk_level: int | None = None,
) -> Message:
    reply = Message(
        conversation_id=to.conversation_id,
        user_id=to.user_id,
        role=role,
        text=text,
        reply_to_id=to.id,
        model=model,
        latency_ms=latency_ms,
        risk_level=risk_level,
    )
    session.add(reply)
    await session.flush()
    return reply


async def add_message(session: AsyncSession, conversation: Conversation, role: Role, text: str) -> Message:
    """A message outside the turn (an operator writing, a system note)."""
    message = Message(conversation_id=conversation.id, user_id=conversation.user_id, role=role, text=text)
    session.add(message)
    await session.flush()
    return message


async def history(session: AsyncSession, message: Message, limit: int) -> list[Message]:
    """The latest `limit` finished messages of the user before `message`, oldest first.

    History spans the user's conversations back to their last reset, so a second phone call
    continues the first. Each reply comes right after the message it answers (a reply's id can
    be higher than later queued user messages).
    """
    last_reset = (
        select(func.coalesce(func.max(Conversation.id), 0))
        .where(Conversation.user_id == message.user_id, Conversation.status == ConversationStatus.RESET)
        .scalar_subquery()
    )
    position = func.coalesce(Message.reply_to_id, Message.id)
    rows = await session.scalars(
        select(Message)
        .where(
            Message.user_id == message.user_id,
            Message.conversation_id > last_reset,
            position < message.id,
            or_(Message.role != Role.USER, Message.status == MessageStatus.ANSWERED),
        )
        .order_by(position.desc(), Message.id.desc())
        .limit(limit)
    )
    return list(reversed(rows.all()))


async def set_feedback(session: AsyncSession, message_id: int, value: int) -> bool:
    result = await session.execute(
        update(Message).where(Message.id == message_id, Message.role == Role.BOT).values(feedback=value)
    )
    return bool(result.rowcount)


# --- escalations and audit -------------------------------------------------------------------


async def open_escalation(
    session: AsyncSession,
    conversation: Conversation,
    message: Message | None,
    *,
    level: int,
    reason: str,
    helpline_shown: str | None = None,
) -> Escalation:
    escalation = Escalation(
        user_id=conversation.user_id,
        conversation_id=conversation.id,
        message_id=message.id if message else None,
        level=level,
        reason=reason,
        status=EscalationStatus.OPEN,
        helpline_shown=helpline_shown,
        alert_count=0,
    )
    session.add(escalation)
    await session.flush()
    return escalation


async def record_alert(
    session: AsyncSession, escalation: Escalation, *, actor: str, action: str, **detail: Any
) -> None:
    """Count an alert about an escalation (re-alerts are timed from it) and audit why it was sent."""
    escalation.alert_count += 1
    escalation.last_alert_at = utcnow()
    await audit(
        session,
        user_id=escalation.user_id,
        conversation_id=escalation.conversation_id,
        escalation_id=escalation.id,
        actor=actor,
        action=action,
        **detail,
    )


async def active_escalation(session: AsyncSession, conversation_id: int) -> Escalation | None:
    return await session.scalar(
        select(Escalation)
        .where(Escalation.conversation_id == conversation_id, Escalation.status != EscalationStatus.RESOLVED)
        .order_by(Escalation.id.desc())
        .limit(1)
    )


async def audit(
    session: AsyncSession,
    *,
    user_id: int,
    actor: str,
    action: str,
    conversation_id: int | None = None,
    escalation_id: int | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEvent(
            user_id=user_id,
            conversation_id=conversation_id,
            escalation_id=escalation_id,
            actor=actor,
            action=action,
            detail=detail,
        )
    )


def since(moment: datetime | None) -> float:
    """Seconds since a stored timestamp (SQLite returns naive UTC datetimes)."""
    if moment is None:
        return float("inf")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (utcnow() - moment).total_seconds()
