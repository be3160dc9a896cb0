"""Repository functions: every query the bot makes, each inside a session the caller's transaction owns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, bindparam, case, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from db.engine import one_at_a_time
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
    ServiceState,
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
    """Insert or update the built-in personas (key, name, description, lines) shipped as data (one
    starting process at a time, so that replicas starting together do not insert the same key twice)."""
    await one_at_a_time(await session.connection())
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


async def persona_table(conn: AsyncConnection) -> dict[int | str, list[str]]:
    """Every built-in persona's lines by id and by key (they change only when a process starts)."""
    table: dict[int | str, list[str]] = {}
    for persona_id, key, lines in await conn.execute(select(Persona.id, Persona.key, Persona.lines)):
        table[persona_id] = table[key] = list(lines)
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


async def find_message(session: AsyncSession, user_id: int, channel_message_id: str) -> Message | None:
    """A user's message by the id its channel gave it."""
    return await session.scalar(
        select(Message).where(Message.user_id == user_id, Message.channel_message_id == channel_message_id)
    )


async def finish(session: AsyncSession, message_id: int, status: MessageStatus, risk_level: int | None) -> None:
    await session.execute(update(Message).where(Message.id == message_id).values(status=status, risk_level=risk_level))


async def get_message(session: AsyncSession, message_id: int) -> Message | None:
    return await session.get(Message, message_id)


async def reply_to(session: AsyncSession, message_id: int) -> Message | None:
    """The bot's (or an operator's) reply to a user message."""
    return await session.scalar(select(Message).where(Message.reply_to_id == message_id).order_by(Message.id).limit(1))


async def add_message(session: AsyncSession, conversation: Conversation, role: Role, text: str) -> Message:
    """A message outside the turn (an operator writing, a system note)."""
    message = Message(conversation_id=conversation.id, user_id=conversation.user_id, role=role, text=text)
    session.add(message)
    await session.flush()
    return message


# --- the turn's queue: Core statements built once per dialect ----------------------------------
#
# Every message of every person passes here, so these are plain Core statements compiled once and
# cached (no ORM unit of work, no statement building per call) and as few round trips as the
# guarantees allow: one statement finds the person and their open conversation (and on PostgreSQL
# locks the person's row), one stores the message and claims its turn when nothing of theirs is ahead.


@dataclass(frozen=True, slots=True)
class Person:
    """What a turn needs to know about the person writing."""

    id: int
    channel: str
    locale: str | None
    country: str | None
    persona_id: int | None
    persona_lines: list[str] | None


@dataclass(frozen=True, slots=True)
class Pending:
    """A stored user message waiting for, or holding, its turn."""

    id: int
    user_id: int
    conversation_id: int
    text: str


@dataclass(frozen=True, slots=True)
class ConversationState:
    """The conversation as the claim saw it: an earlier turn's crisis level or an operator's take-over counts."""

    id: int
    risk_level: int
    operator: str | None


def _person_columns() -> tuple[Any, ...]:
    """What a turn reads about the person, in `Person`'s order."""
    return (User.id, User.channel, User.locale, User.country, User.persona_id, User.persona_lines)


def _unfinished(earlier: Any) -> Any:
    """An earlier message of the user that still holds up the queue (unless its lease ran out)."""
    return (
        select(earlier.id)
        .where(
            earlier.user_id == bindparam("uid"),
            earlier.role == Role.USER,
            or_(
                (earlier.status == MessageStatus.PROCESSING) & (earlier.claimed_at > bindparam("cutoff")),
                (earlier.status == MessageStatus.PENDING) & (earlier.created_at > bindparam("cutoff")),
            ),
        )
        .exists()
    )


def _answer(dialect: str) -> Any:
    """Store a reply. On PostgreSQL the same statement marks the message answered (a data-modifying CTE),
    so a reply costs one round trip and needs no transaction around it; SQLite adds an UPDATE."""
    reply = insert(Message).values(
        conversation_id=bindparam("conv"),
        user_id=bindparam("uid"),
        role=Role.BOT,
        text=bindparam("body", type_=Message.text.type),
        reply_to_id=bindparam("mid"),
        model=bindparam("model_name"),
        latency_ms=bindparam("latency"),
        risk_level=bindparam("risk"),
        created_at=bindparam("now"),
    )
    if dialect != "postgresql":
        return reply.returning(Message.id)
    stored = reply.returning(Message.id).cte("reply")
    return (
        update(Message)
        .where(Message.id == bindparam("mid"))
        .values(status=MessageStatus.ANSWERED, risk_level=bindparam("assessed"))
        .add_cte(stored)
        .returning(select(stored.c.id).scalar_subquery())
    )


@cache
def _statements(dialect: str) -> SimpleNamespace:
    """The queue's statements for one dialect (ON CONFLICT and FOR UPDATE differ), built on first use."""
    dialect_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    person = (
        select(*_person_columns(), Conversation.id.label("conversation_id"))
        .outerjoin(Conversation, (Conversation.user_id == User.id) & (Conversation.status == ConversationStatus.OPEN))
        .where(User.channel == bindparam("channel"), User.external_id == bindparam("external_id"))
    )
    if dialect == "postgresql":
        # Serialise this person's queue operations until the transaction ends, so message ids are handed
        # out in queue order (SQLite's BEGIN IMMEDIATE already serialises writers). NO KEY UPDATE, not
        # UPDATE: a reply being stored meanwhile checks its foreign key with KEY SHARE on this row, and
        # under FOR UPDATE that check waited on us while a redelivery's insert waited on the reply's
        # update of the same message: a deadlock.
        person = person.with_for_update(of=User, key_share=True)
    risk = select(Conversation.risk_level).where(Conversation.id == bindparam("conv")).scalar_subquery()
    operator = select(Conversation.operator).where(Conversation.id == bindparam("conv")).scalar_subquery()
    ahead = _unfinished(aliased(Message))
    store = (
        dialect_insert(Message)
        .values(
            conversation_id=bindparam("conv"),
            user_id=bindparam("uid"),
            role=Role.USER,
            text=bindparam("body", type_=Message.text.type),
            channel_message_id=bindparam("cmid"),
            status=case((ahead, MessageStatus.PENDING), else_=MessageStatus.PROCESSING),
            created_at=bindparam("now"),
            claimed_at=case((ahead, None), else_=bindparam("now")),
        )
        .on_conflict_do_nothing(index_elements=["user_id", "channel_message_id"])
        .returning(Message.id, Message.status, risk, operator)
    )
    earlier = aliased(Message)
    first_in_line = ~_unfinished(earlier).where(earlier.id < bindparam("mid"))
    claim = (
        update(Message)
        .where(Message.id == bindparam("mid"), Message.status == MessageStatus.PENDING, first_in_line)
        .values(status=MessageStatus.PROCESSING, claimed_at=bindparam("now"))
        .returning(risk, operator)
    )
    abandoned = or_(
        (Message.status == MessageStatus.PROCESSING) & (Message.claimed_at <= bindparam("cutoff")),
        (Message.status == MessageStatus.PENDING) & (Message.created_at <= bindparam("cutoff")),
    )
    take_over = (
        update(Message)
        .where(Message.id == bindparam("mid"), abandoned, first_in_line)
        .values(status=MessageStatus.PROCESSING, claimed_at=bindparam("now"))
        .returning(risk, operator)
    )
    last_reset = (
        select(func.coalesce(func.max(Conversation.id), 0))
        .where(Conversation.user_id == bindparam("uid"), Conversation.status == ConversationStatus.RESET)
        .scalar_subquery()
    )
    position = func.coalesce(Message.reply_to_id, Message.id)
    history = (
        select(Message.role, Message.text)
        .where(
            Message.user_id == bindparam("uid"),
            Message.conversation_id > last_reset,
            position < bindparam("mid"),
            or_(Message.role != Role.USER, Message.status == MessageStatus.ANSWERED),
        )
        .order_by(position.desc(), Message.id.desc())
        .limit(bindparam("limit"))
    )
    return SimpleNamespace(
        person=person,
        new_user=dialect_insert(User).on_conflict_do_nothing(index_elements=["channel", "external_id"]),
        new_conversation=dialect_insert(Conversation).on_conflict_do_nothing(
            index_elements=["user_id"],
            index_where=text("status = 'open'"),  # the partial index's own words
        ),
        set_locale=update(User).where(User.id == bindparam("uid")).values(locale=bindparam("locale")),
        store=store,
        claim=claim,
        take_over=take_over,
        history=history,
        answer=_answer(dialect),
        finish=update(Message).where(Message.id == bindparam("mid")),
        duplicate=select(Message.id).where(
            Message.user_id == bindparam("uid"), Message.channel_message_id == bindparam("cmid")
        ),
    )


async def _person(conn: AsyncConnection, q: SimpleNamespace, channel: str, external_id: str) -> Row[Any] | None:
    return (await conn.execute(q.person, {"channel": channel, "external_id": external_id})).first()


async def receive(
    conn: AsyncConnection,
    channel: str,
    external_id: str,
    text: str,
    channel_message_id: str | None,
    lease: timedelta,
    *,
    locale: str | None = None,
    contact: str | None = None,
) -> tuple[Person, Pending, ConversationState | None]:
    """Store a person's message as the last in their queue; claim its turn at once when nothing is ahead.

    Finds or creates the person and their open conversation (creation is safe against two first
    messages racing). A redelivered channel message id stores nothing and raises DuplicateMessage.
    The conversation's state comes back only when the turn was claimed.
    """
    q = _statements(conn.dialect.name)
    row = await _person(conn, q, channel, external_id)
    if row is None:
        await conn.execute(
            q.new_user, {"channel": channel, "external_id": external_id, "locale": locale, "contact": contact}
        )
        row = await _person(conn, q, channel, external_id)
        assert row is not None, "the person was just created or already existed"
    if row.conversation_id is None:
        await conn.execute(q.new_conversation, {"user_id": row.id, "status": ConversationStatus.OPEN})
        row = await _person(conn, q, channel, external_id)
        assert row is not None and row.conversation_id is not None, "an open conversation exists now"
    person = Person(row.id, row.channel, row.locale, row.country, row.persona_id, row.persona_lines)
    if locale and not person.locale:
        await conn.execute(q.set_locale, {"uid": person.id, "locale": locale})
        person = Person(row.id, row.channel, locale, row.country, row.persona_id, row.persona_lines)
    now = utcnow()
    params = {
        "conv": row.conversation_id,
        "uid": person.id,
        "body": text,
        "cmid": channel_message_id,
        "now": now,
        "cutoff": now - lease,
    }
    stored = (await conn.execute(q.store, params)).first()
    if stored is None:
        existing = await conn.scalar(q.duplicate, {"uid": person.id, "cmid": channel_message_id})
        assert existing is not None, "a conflicting insert means the message exists"
        raise DuplicateMessage(existing)
    message = Pending(stored.id, person.id, row.conversation_id, text)
    if stored.status != MessageStatus.PROCESSING:
        return person, message, None
    return person, message, ConversationState(row.conversation_id, stored[2] or 0, stored[3])


async def claim(conn: AsyncConnection, message: Pending, lease: timedelta) -> ConversationState | None:
    """Take the turn of a queued message, unless an earlier message of the same user is still unfinished.

    Turns of one user run in message-id order across all processes. A message whose turn was
    claimed (or queued) longer than `lease` ago belongs to a process that died; it stops blocking.
    """
    now = utcnow()
    params = {
        "mid": message.id,
        "uid": message.user_id,
        "conv": message.conversation_id,
        "now": now,
        "cutoff": now - lease,
    }
    row = (await conn.execute(_statements(conn.dialect.name).claim, params)).first()
    return None if row is None else ConversationState(message.conversation_id, row[0] or 0, row[1])


async def take_over(
    conn: AsyncConnection, message_id: int, lease: timedelta
) -> tuple[Person, Pending, ConversationState] | None:
    """Claim the turn of a message whose process died holding it (or waiting for it) longer than
    `lease` ago, so that a redelivery of it is answered; None while it is alive, finished or gone,
    or an earlier message of the person's still holds the queue. One taker wins a race."""
    found = (
        await conn.execute(
            select(Message.user_id, Message.conversation_id, Message.text).where(Message.id == message_id)
        )
    ).first()
    if found is None:
        return None
    now = utcnow()
    params = {"mid": message_id, "uid": found.user_id, "conv": found.conversation_id, "now": now, "cutoff": now - lease}
    claimed = (await conn.execute(_statements(conn.dialect.name).take_over, params)).first()
    if claimed is None:
        return None
    user = (await conn.execute(select(*_person_columns()).where(User.id == found.user_id))).one()
    return (
        Person(*user),
        Pending(message_id, found.user_id, found.conversation_id, found.text),
        ConversationState(found.conversation_id, claimed[0] or 0, claimed[1]),
    )


async def message_status(conn: AsyncConnection, message_id: int) -> MessageStatus | None:
    """A message's place in the queue; None once it is gone (the person deleted their data)."""
    return await conn.scalar(select(Message.status).where(Message.id == message_id))


async def history(conn: AsyncConnection, message: Pending, limit: int) -> list[Row[Any]]:
    """The latest `limit` finished messages (role, text) of the user before `message`, oldest first.

    History spans the user's conversations back to their last reset, so a second phone call
    continues the first. Each reply comes right after the message it answers (a reply's id can
    be higher than later queued user messages).
    """
    params = {"uid": message.user_id, "mid": message.id, "limit": limit}
    rows = (await conn.execute(_statements(conn.dialect.name).history, params)).all()
    rows.reverse()
    return rows


async def answer(
    conn: AsyncConnection,
    message: Pending,
    text: str,
    *,
    assessed: int | None,
    model: str | None = None,
    latency_ms: int | None = None,
    risk_level: int | None = None,
) -> int:
    """Store the reply to a user message and mark the message answered; returns the reply's id.

    On PostgreSQL this is one statement, atomic by itself (see `Database.autocommit`)."""
    q = _statements(conn.dialect.name)
    params = {
        "conv": message.conversation_id,
        "uid": message.user_id,
        "body": text,
        "mid": message.id,
        "model_name": model,
        "latency": latency_ms,
        "risk": risk_level,
        "now": utcnow(),
        "assessed": assessed,
    }
    reply_id = await conn.scalar(q.answer, params)
    if conn.dialect.name != "postgresql":
        await conn.execute(q.finish, {"mid": message.id, "status": MessageStatus.ANSWERED, "risk_level": assessed})
    return int(reply_id)


async def set_feedback(session: AsyncSession, message_id: int, value: int) -> bool:
    result = await session.execute(
        update(Message).where(Message.id == message_id, Message.role == Role.BOT).values(feedback=value)
    )
    return bool(result.rowcount)


# --- operator holds -------------------------------------------------------------------------


async def hold(session: AsyncSession, conversation_id: int, operator: str) -> bool:
    """Give the conversation to `operator` unless another operator holds it. One conditional
    statement, so of two operators taking the same person at once exactly one wins."""
    result = await session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            or_(Conversation.operator.is_(None), Conversation.operator == operator),
        )
        .values(operator=operator, taken_over_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def operator_wrote(session: AsyncSession, conversation_id: int, operator: str) -> str | None:
    """An operator wrote in the conversation: it is theirs if nobody held it, and its hold is renewed
    (one statement: a take or a lapse meanwhile is not overwritten). Who holds it now."""
    result = await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(operator=func.coalesce(Conversation.operator, operator), taken_over_at=utcnow())
        .returning(Conversation.operator)
        .execution_options(synchronize_session=False)
    )
    return result.scalar()


async def advance_escalation(
    session: AsyncSession, escalation_id: int, status: EscalationStatus, operator: str
) -> Row[Any] | None:
    """Move an escalation to `status` if it is at an earlier step (open, acknowledged, resolved), in
    one statement, so that of an /ack and a /resolve at once the later step stands. Its user and
    conversation ids when it moved, else None."""
    order = (EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED, EscalationStatus.RESOLVED)
    stamp = "acknowledged_at" if status == EscalationStatus.ACKNOWLEDGED else "resolved_at"
    result = await session.execute(
        update(Escalation)
        .where(Escalation.id == escalation_id, Escalation.status.in_(order[: order.index(status)]))
        .values(status=status, operator=operator, **{stamp: utcnow()})
        .returning(Escalation.user_id, Escalation.conversation_id)
        .execution_options(synchronize_session=False)
    )
    return result.first()


async def acknowledge_open_escalations(session: AsyncSession, user_id: int, operator: str) -> list[int]:
    """An operator took the person: their open escalations are acknowledged (whichever conversation
    raised them), so re-alerts stop. The ids acknowledged."""
    result = await session.execute(
        update(Escalation)
        .where(Escalation.user_id == user_id, Escalation.status == EscalationStatus.OPEN)
        .values(status=EscalationStatus.ACKNOWLEDGED, operator=operator, acknowledged_at=utcnow())
        .returning(Escalation.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())


async def lapse_hold(session: AsyncSession, conversation_id: int, idle_since: datetime) -> str | None:
    """End a hold whose operator has neither taken nor written since `idle_since`; the operator it
    had, or None when it is not held or its operator was active (a conditional update, so a hold
    an operator renews meanwhile stands)."""
    idle = or_(Conversation.taken_over_at.is_(None), Conversation.taken_over_at < idle_since)
    held = Conversation.operator.is_not(None)
    holder = await session.scalar(select(Conversation.operator).where(Conversation.id == conversation_id, held, idle))
    if holder is None:
        return None
    result = await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.operator == holder, idle)
        .values(operator=None)
        .execution_options(synchronize_session=False)
    )
    return holder if result.rowcount == 1 else None


# --- escalations and audit -------------------------------------------------------------------


async def open_escalation(
    session: AsyncSession,
    conversation: Conversation,
    message_id: int | None,
    *,
    level: int,
    reason: str,
    helpline_shown: str | None = None,
) -> Escalation:
    escalation = Escalation(
        user_id=conversation.user_id,
        conversation_id=conversation.id,
        message_id=message_id,
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


# --- the database itself ------------------------------------------------------------------------


async def remembered(session: AsyncSession, name: str, value: str) -> str:
    """The value the database keeps under `name`, storing `value` there when it keeps none yet."""
    await one_at_a_time(await session.connection())
    row = await session.get(ServiceState, name)
    if row is None:
        session.add(row := ServiceState(name=name, value=value))
    return row.value


# --- the operator console's views ---------------------------------------------------------------


async def unresolved_escalations(session: AsyncSession, limit: int) -> list[Row[Any]]:
    """Escalations not yet resolved, most urgent first, with the person's channel and who holds them."""
    result = await session.execute(
        select(
            Escalation.id,
            Escalation.conversation_id,
            Escalation.level,
            Escalation.status,
            Escalation.operator,
            Escalation.alert_count,
            Escalation.created_at,
            User.channel,
            Conversation.operator.label("held_by"),
        )
        .join(User, User.id == Escalation.user_id)
        .join(Conversation, Conversation.id == Escalation.conversation_id)
        .where(Escalation.status != EscalationStatus.RESOLVED)
        .order_by(Escalation.level.desc(), Escalation.id.desc())
        .limit(limit)
    )
    return list(result.all())


async def recent_messages(session: AsyncSession, conversation_id: int, limit: int) -> list[Message] | None:
    """The latest messages of the person a conversation belongs to (across their conversations, since
    an alert's may have ended), oldest first; None when there is no such conversation."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    rows = await session.scalars(
        select(Message).where(Message.user_id == conversation.user_id).order_by(Message.id.desc()).limit(limit)
    )
    return list(reversed(rows.all()))


def since(moment: datetime | None) -> float:
    """Seconds since a stored timestamp (SQLite returns naive UTC datetimes)."""
    if moment is None:
        return float("inf")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (utcnow() - moment).total_seconds()
