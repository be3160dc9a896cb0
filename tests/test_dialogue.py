"""The turn on SQLite and PostgreSQL: storage, ordering, idempotency, forget, bad input, failures."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from bot import texts
from bot.alerts import Alert
from bot.dialogue import CHARS_PER_TOKEN, Dialogue, Incoming, Outcome
from bot.settings import Settings
from bot.texts import builtin_personas
from db import repo
from db.engine import Database
from db.models import AuditEvent, Conversation, Escalation, Message, MessageStatus, Persona, Role, User, utcnow
from tests.doubles import EchoBackend, KeywordSafety


async def make_dialogue(db: Database, backend: EchoBackend | None, settings: Settings) -> Dialogue:
    async with db.transaction() as session:
        await repo.sync_personas(session, [(p.key, p.name, p.description, p.lines) for p in builtin_personas()])
    return Dialogue(db, backend, KeywordSafety(), settings)


async def count(db: Database, model: type, *where: object) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))  # type: ignore[arg-type]


async def test_a_turn_stores_message_and_reply_and_sends_persona_and_history(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    first = await dialogue.handle(Incoming("test", "u1", "hello there", channel_message_id="1"))
    second = await dialogue.handle(Incoming("test", "u1", "how are you", channel_message_id="2"))

    assert (first.reply, first.outcome) == ("echo: hello there", Outcome.MODEL)
    assert second.reply == "echo: how are you"
    prompt = backend.calls[1]
    persona = builtin_personas()[0].lines
    assert [m.content for m in prompt if m.role == "system"] == persona
    assert [(m.role, m.content) for m in prompt if m.role != "system"] == [
        ("user", "hello there"),
        ("assistant", "echo: hello there"),
        ("user", "how are you"),
    ]
    async with db.transaction() as session:
        rows = (await session.scalars(select(Message).order_by(Message.id))).all()
    assert [(m.role, m.status) for m in rows] == [
        (Role.USER, MessageStatus.ANSWERED),
        (Role.BOT, None),
        (Role.USER, MessageStatus.ANSWERED),
        (Role.BOT, None),
    ]
    assert rows[1].reply_to_id == rows[0].id and rows[1].model == "echo" and rows[1].latency_ms is not None


async def test_one_users_messages_run_strictly_in_order(db, settings) -> None:
    backend = EchoBackend(delay=0.01)
    dialogue = await make_dialogue(db, backend, settings)
    texts = [f"message {i}" for i in range(15)]
    results = await asyncio.gather(*(dialogue.handle(Incoming("test", "same", t)) for t in texts))

    assert [r.reply for r in results] == [f"echo: {t}" for t in texts]
    assert backend.max_in_flight == 1
    # Each turn saw exactly the exchanges stored before it, in message-id order.
    order = sorted(results, key=lambda r: r.message_id or 0)
    for index, (call, result) in enumerate(zip(backend.calls, order, strict=True)):
        turns = [m for m in call if m.role != "system"]
        assert turns[-1].content == result.reply.removeprefix("echo: ")
        assert len(turns) == min(2 * index, settings.history_turns) + 1


async def test_a_message_waiting_its_turn_stops_waiting_when_the_person_deletes_their_data(db, settings) -> None:
    backend = EchoBackend(delay=0.5)
    dialogue = await make_dialogue(db, backend, settings)
    first = asyncio.create_task(dialogue.handle(Incoming("test", "u", "first")))
    while not backend.calls:  # the first turn is with the model
        await asyncio.sleep(0.01)
    queued = asyncio.create_task(dialogue.handle(Incoming("test", "u", "second")))
    await asyncio.sleep(0.05)
    assert await dialogue.forget("test", "u")
    result = await asyncio.wait_for(queued, 5)  # it would otherwise poll for the deleted message forever
    assert (result.outcome, result.reply) == (Outcome.FORGOTTEN, None)
    await first
    assert len(backend.calls) == 1 and await count(db, Message) == 0


async def test_different_users_run_concurrently(db, settings) -> None:
    backend = EchoBackend(delay=0.2)
    dialogue = await make_dialogue(db, backend, settings)
    results = await asyncio.gather(*(dialogue.handle(Incoming("test", f"user{i}", "hi")) for i in range(8)))
    assert all(r.outcome == Outcome.MODEL for r in results)
    assert backend.max_in_flight > 1


async def test_two_dialogue_instances_sharing_a_database_keep_one_users_order(db, settings) -> None:
    """Two bot replicas (two Dialogue objects, two engines) on one database."""
    backend = EchoBackend(delay=0.01)
    first = await make_dialogue(db, backend, settings)
    other_db = Database(settings.database_url)
    second = Dialogue(other_db, backend, KeywordSafety(), settings)
    try:
        replicas = [first, second]
        results = await asyncio.gather(
            *(replicas[i % 2].handle(Incoming("test", "shared", f"m{i}")) for i in range(10))
        )
    finally:
        await other_db.dispose()
    assert backend.max_in_flight == 1
    assert sorted(r.reply for r in results) == sorted(f"echo: m{i}" for i in range(10))


async def test_redelivered_message_gets_one_reply(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    incoming = Incoming("test", "u1", "are you there", channel_message_id="42")
    first, again = await asyncio.gather(dialogue.handle(incoming), dialogue.handle(incoming))
    third = await dialogue.handle(incoming)

    assert sorted([first.duplicate, again.duplicate]) == [False, True]
    assert third.duplicate and third.reply == "echo: are you there"
    assert len(backend.calls) == 1
    assert await count(db, Message, Message.role == Role.USER) == 1
    assert await count(db, Message, Message.role == Role.BOT) == 1


async def test_a_redelivery_answers_the_turns_a_stopped_process_left_behind(db, backend, settings) -> None:
    lease = timedelta(seconds=0.3)
    dialogue = await make_dialogue(db, backend, settings.model_copy(update={"turn_lease_s": lease.total_seconds()}))
    async with db.begin() as conn:  # a process stored two messages and stopped: the first mid-turn, one queued
        await repo.receive(conn, "test", "u", "first", "m1", lease)
        await repo.receive(conn, "test", "u", "second", "m2", lease)

    first = await asyncio.wait_for(dialogue.handle(Incoming("test", "u", "first", channel_message_id="m1")), 5)
    second = await asyncio.wait_for(dialogue.handle(Incoming("test", "u", "second", channel_message_id="m2")), 5)
    assert (first.reply, second.reply, first.duplicate, second.duplicate) == (
        "echo: first",
        "echo: second",
        False,
        False,
    )
    assert [m.content for m in backend.calls[-1] if m.role != "system"] == ["first", "echo: first", "second"]
    again = await dialogue.handle(Incoming("test", "u", "first", channel_message_id="m1"))
    assert again.duplicate and again.reply == "echo: first" and len(backend.calls) == 2
    assert await count(db, Message, Message.status == MessageStatus.ANSWERED) == 2


async def test_forget_leaves_no_row_of_the_user(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    await dialogue.set_persona("test", "gone", lines=["i like tea"])
    await dialogue.handle(Incoming("test", "gone", "my secret words"))
    await dialogue.handle(Incoming("test", "gone", "CRISIS now"))  # escalation + audit rows too
    await dialogue.handle(Incoming("test", "stays", "hello"))
    async with db.transaction() as session:
        gone = await repo.find_user(session, "test", "gone")
    assert await count(db, Escalation, Escalation.user_id == gone.id) == 1

    assert await dialogue.forget("test", "gone") is True
    for model in (Message, Conversation, Escalation, AuditEvent):
        assert await count(db, model, model.user_id == gone.id) == 0
    assert await count(db, User, User.external_id == "gone") == 0
    assert await count(db, Message, Message.text.contains("secret")) == 0
    assert await count(db, User) == 1 and await count(db, Persona) == len(builtin_personas())
    assert await dialogue.forget("test", "gone") is False


async def test_reset_starts_a_conversation_without_history(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    await dialogue.handle(Incoming("test", "u", "before"))
    await dialogue.reset("test", "u")
    await dialogue.handle(Incoming("test", "u", "after"))
    assert [m.content for m in backend.calls[-1] if m.role != "system"] == ["after"]
    assert await count(db, Conversation) == 2


async def test_persona_choice_and_own_lines_reach_the_model(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    assert await dialogue.set_persona("test", "u", key="coach")
    await dialogue.handle(Incoming("test", "u", "hi"))
    assert [m.content for m in backend.calls[-1] if m.role == "system"] == builtin_personas()[2].lines
    await dialogue.set_persona("test", "u", lines=["i am a sailor", " ", "i love the sea"])
    await dialogue.handle(Incoming("test", "u", "hi again"))
    assert [m.content for m in backend.calls[-1] if m.role == "system"] == ["i am a sailor", "i love the sea"]
    assert not await dialogue.set_persona("test", "u", key="no-such-persona")


@pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
async def test_empty_text_is_answered_and_not_stored(db, backend, settings, blank: str) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    result = await dialogue.handle(Incoming("test", "u", blank))
    assert result.outcome == Outcome.EMPTY and result.reply
    assert await count(db, Message) == 0 and not backend.calls


async def test_hundred_kilobyte_message_is_stored_whole_and_answered(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    huge = ("word " * 20_000).strip()
    result = await dialogue.handle(Incoming("test", "u", huge))
    assert result.outcome == Outcome.MODEL
    async with db.transaction() as session:
        stored = await session.get_one(Message, result.message_id)
    assert stored.text == huge
    sent = backend.calls[-1][-1].content  # the model is sent the newest part that fits its budget
    assert len(sent) == settings.context_tokens * CHARS_PER_TOKEN and huge.endswith(sent)
    too_long = await dialogue.handle(Incoming("test", "u", "x" * (settings.max_message_chars + 1)))
    assert too_long.outcome == Outcome.TOO_LONG and await count(db, Message, Message.role == Role.USER) == 1
    at_risk = await dialogue.handle(Incoming("test", "u", "x " * settings.max_message_chars + "CRISIS"))
    assert at_risk.outcome == Outcome.CRISIS and await count(db, Message, Message.role == Role.USER) == 1


async def test_model_down_gives_fallback_and_keeps_the_message(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    backend.fail = True
    result = await dialogue.handle(Incoming("test", "u", "is anyone there"))
    assert result.outcome == Outcome.FALLBACK and "saved" in result.reply
    async with db.transaction() as session:
        stored = await session.get_one(Message, result.message_id)
    assert stored.text == "is anyone there" and stored.status == MessageStatus.ANSWERED


async def test_no_backend_at_all_gives_fallback(db, settings) -> None:
    dialogue = await make_dialogue(db, None, settings)
    assert (await dialogue.handle(Incoming("test", "u", "hello"))).outcome == Outcome.FALLBACK


async def test_unsafe_model_reply_is_replaced(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    result = await dialogue.handle(Incoming("test", "u", "say UNSAFE things"))
    assert result.outcome == Outcome.FILTERED and "UNSAFE" not in result.reply


async def test_crisis_answers_escalates_and_alerts_without_the_model(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    backend.fail = True
    alerts: list[Alert] = []

    async def sink(alert: Alert) -> None:
        alerts.append(alert)

    dialogue.alerts.subscribe(sink)
    result = await dialogue.handle(Incoming("test", "u", "CRISIS tonight"))
    assert result.outcome == Outcome.CRISIS and "112" in result.reply and not backend.calls
    assert result.escalation_id is not None
    assert [(a.kind, a.escalation_id, a.level) for a in alerts] == [("escalation", result.escalation_id, "crisis")]
    async with db.transaction() as session:
        conversation = await session.scalar(select(Conversation))
        escalation = await session.get_one(Escalation, result.escalation_id)
    assert conversation.risk_level == 3 and escalation.helpline_shown == "test-helpline"
    assert "CRISIS tonight" not in escalation.reason  # rule ids, never the user's words

    # Sticky: the next ordinary message is still at crisis level, answered by the model with help in view.
    backend.fail = False
    later = await dialogue.handle(Incoming("test", "u", "thanks"))
    assert later.outcome == Outcome.MODEL and later.level == 3 and "112" in later.reply
    # So is the fallback when the model fails then, and a reply the output filter replaced.
    backend.fail = True
    failed = await dialogue.handle(Incoming("test", "u", "are you there?"))
    assert failed.outcome == Outcome.FALLBACK and "112" in failed.reply
    backend.fail = False
    filtered = await dialogue.handle(Incoming("test", "u", "say UNSAFE"))
    assert filtered.outcome == Outcome.FILTERED and "112" in filtered.reply


async def test_operator_holding_a_conversation_silences_the_model(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    await dialogue.handle(Incoming("test", "u", "hello"))
    async with db.transaction() as session:
        conversation = await session.scalar(select(Conversation))
        conversation.operator, conversation.taken_over_at = "operator-1", utcnow()
    alerts: list[Alert] = []

    async def sink(alert: Alert) -> None:
        alerts.append(alert)

    dialogue.alerts.subscribe(sink)
    result = await dialogue.handle(Incoming("test", "u", "are you a person?"))
    assert result.reply is None and result.outcome == Outcome.OPERATOR
    assert len(backend.calls) == 1 and alerts[0].kind == "user_message"


async def test_database_failing_mid_turn_still_answers_and_writes_nothing_half(
    db, backend, settings, monkeypatch
) -> None:
    dialogue = await make_dialogue(db, backend, settings)

    async def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(repo, "answer", broken)
    result = await dialogue.handle(Incoming("test", "u", "hello"))
    assert result.reply == "echo: hello"
    assert await count(db, Message, Message.role == Role.BOT) == 0
    async with db.transaction() as session:
        stored = await session.get_one(Message, result.message_id)
    assert stored.status == MessageStatus.FAILED  # kept, and no longer blocking the user's next turn

    monkeypatch.setattr(repo, "open_escalation", broken)
    crisis = await dialogue.handle(Incoming("test", "u", "CRISIS"))
    assert crisis.outcome == Outcome.CRISIS and crisis.reply
    assert await count(db, Escalation) == 0 and await count(db, AuditEvent) == 0
    async with db.transaction() as session:
        assert (await session.scalar(select(Conversation))).risk_level == 0
        # kept, and not left "processing": that would hold the person's next message for the whole lease
        assert (await session.get_one(Message, crisis.message_id)).status == MessageStatus.FAILED


async def test_database_down_before_storing_still_answers(settings) -> None:
    dead = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    dialogue = Dialogue(dead, EchoBackend(), KeywordSafety(), settings)
    alerts: list[Alert] = []

    async def sink(alert: Alert) -> None:
        alerts.append(alert)

    dialogue.alerts.subscribe(sink)
    try:
        ordinary = await dialogue.handle(Incoming("test", "u", "hello"))
        crisis = await dialogue.handle(Incoming("test", "u", "CRISIS"))
    finally:
        await dead.dispose()
    assert ordinary.outcome == Outcome.FALLBACK
    assert ordinary.reply == texts.text("unsaved") and "couldn't keep your message" in ordinary.reply  # not "saved"
    assert crisis.outcome == Outcome.CRISIS and alerts and alerts[0].escalation_id is None


async def test_an_ended_conversation_still_informs_the_next_but_a_reset_does_not(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    await dialogue.handle(Incoming("phone", "caller", "first call"))
    await dialogue.end_conversation("phone", "caller")  # the call hung up
    await dialogue.handle(Incoming("phone", "caller", "second call"))
    assert [m.content for m in backend.calls[-1] if m.role != "system"] == [
        "first call",
        "echo: first call",
        "second call",
    ]
    await dialogue.reset("phone", "caller")
    await dialogue.handle(Incoming("phone", "caller", "fresh start"))
    assert [m.content for m in backend.calls[-1] if m.role != "system"] == ["fresh start"]
    assert await count(db, Conversation) == 3


async def test_result_of_reports_a_finished_turn_by_channel_message_id(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    assert await dialogue.result_of("test", "u", "m1") is None
    await dialogue.handle(Incoming("test", "u", "CRISIS", channel_message_id="m1"))
    await dialogue.handle(Incoming("test", "other", "hello", channel_message_id="m1"))
    crisis, ordinary = await dialogue.result_of("test", "u", "m1"), await dialogue.result_of("test", "other", "m1")
    assert crisis.outcome == Outcome.CRISIS and "112" in crisis.reply
    assert (ordinary.outcome, ordinary.reply) == (Outcome.MODEL, "echo: hello")


async def test_many_new_people_one_after_another_each_get_a_conversation(db, backend, settings) -> None:
    """More first messages on one connection than PostgreSQL's custom-plan count (5): the statement that
    creates the open conversation must still match the partial unique index under a generic plan."""
    dialogue = await make_dialogue(db, backend, settings)
    results = [await dialogue.handle(Incoming("test", f"new{i}", "hi")) for i in range(12)]
    assert [r.outcome for r in results] == [Outcome.MODEL] * 12
    assert await count(db, Conversation) == 12


async def test_sqlite_writer_waits_for_another_engines_lock_without_blocking_the_event_loop(tmp_path) -> None:
    """SQLite runs on the event loop's thread: a second engine (another replica, another process) waiting
    for the write lock must sleep asynchronously, then get in once the first commits."""
    from db import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    await migrate.upgrade(url)
    first, second = Database(url), Database(url)
    add_user = text(
        "INSERT INTO users (channel, external_id, opted_out, created_at) VALUES ('t', :id, 0, '2026-01-01')"
    )
    try:
        async with first.begin() as conn:
            await conn.execute(add_user, {"id": "a"})
            waiting = asyncio.create_task(_insert_with(second, add_user, "b"))
            started = time.perf_counter()
            await asyncio.sleep(0.2)
            assert time.perf_counter() - started < 0.5  # the loop kept running while `second` waited
            assert not waiting.done()
        await asyncio.wait_for(waiting, 5)
        assert await count(second, User) == 2
    finally:
        await first.dispose()
        await second.dispose()


async def _insert_with(db: Database, statement: object, external_id: str) -> None:
    async with db.begin() as conn:
        await conn.execute(statement, {"id": external_id})  # type: ignore[arg-type]


async def test_a_crisis_turn_whose_records_failed_is_still_a_crisis_when_picked_up(
    db, backend, settings, monkeypatch
) -> None:
    """A call's next request (perhaps on another replica) reads the turn from the database: it must
    still give the safe words, and so transfer the call, not say that an operator is there."""
    dialogue = await make_dialogue(db, backend, settings)

    async def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(repo, "answer", broken)
    first = await dialogue.handle(Incoming("test", "u", "CRISIS now", channel_message_id="call:1"))
    assert first.outcome == Outcome.CRISIS
    picked_up = await dialogue.result_of("test", "u", "call:1")
    assert picked_up is not None and picked_up.outcome == Outcome.CRISIS
    assert picked_up.reply == first.reply and picked_up.level == 3  # Level.CRISIS


async def test_words_outside_a_message_pass_the_crisis_layer(db, backend, settings) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    assert await dialogue.answered_if_at_risk(Incoming("test", "u", "I am calm.\nI listen.")) is None
    at_risk = await dialogue.answered_if_at_risk(Incoming("test", "u", "I will do CRISIS tonight"))
    assert at_risk is not None and at_risk.outcome == Outcome.CRISIS and at_risk.escalation_id is not None
    assert not backend.calls


async def test_a_harmless_turn_whose_reply_failed_is_not_replayed_as_a_crisis(
    db, backend, settings, monkeypatch
) -> None:
    dialogue = await make_dialogue(db, backend, settings)
    await dialogue.handle(Incoming("test", "u", "CRISIS"))  # the conversation stays at risk

    async def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(repo, "answer", broken)
    await dialogue.handle(Incoming("test", "u", "thanks, I'm with my sister now", channel_message_id="call:2"))
    picked_up = await dialogue.result_of("test", "u", "call:2")
    assert picked_up is not None and picked_up.outcome == Outcome.FALLBACK  # not safe words and a transfer
