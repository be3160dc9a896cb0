"""Operators take over, write to the user, release; overdue escalations are re-alerted; all audited."""

from __future__ import annotations

from sqlalchemy import select

from bot.alerts import Alert
from bot.crisis.levels import Level
from bot.dialogue import Dialogue, Incoming, Outcome
from bot.handoff import Handoff
from db.models import AuditEvent, Conversation, Escalation, EscalationStatus, Message, Role
from tests.doubles import EchoBackend, KeywordSafety


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.sent: list[tuple[str, str]] = []

    async def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    async def send(self, external_id: str, text: str) -> None:
        self.sent.append((external_id, text))


async def setup(db, settings):  # type: ignore[no-untyped-def]
    backend, recorder = EchoBackend(), Recorder()
    dialogue = Dialogue(db, backend, KeywordSafety(), settings)
    dialogue.alerts.subscribe(recorder.alert)
    handoff = Handoff(db, dialogue.alerts)
    handoff.register_sender("test", recorder.send)
    return dialogue, handoff, backend, recorder


async def actions(db) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    async with db.transaction() as session:
        return [(e.actor, e.action) for e in (await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all()]


async def test_take_over_write_and_release(db, settings) -> None:
    dialogue, handoff, backend, recorder = await setup(db, settings)
    crisis = await dialogue.handle(Incoming("test", "u", "CRISIS"))
    conversation_id = recorder.alerts[0].conversation_id

    assert await handoff.take(conversation_id, "olena")
    held = await dialogue.handle(Incoming("test", "u", "is someone there?"))
    assert held.outcome == Outcome.OPERATOR and held.reply is None and not backend.calls
    assert recorder.alerts[-1].kind == "user_message"

    assert recorder.sent[0][1].startswith("A person from our team")  # told when the operator took over
    assert await handoff.say(conversation_id, "olena", "I'm here with you.")
    assert recorder.sent[1:] == [("u", "I'm here with you.")]

    assert await handoff.release(conversation_id, "olena")
    after = await dialogue.handle(Incoming("test", "u", "thank you"))
    assert after.outcome == Outcome.MODEL
    # The operator's words are part of the history the model sees afterwards.
    assert ("assistant", "I'm here with you.") in [(m.role, m.content) for m in backend.calls[-1]]

    async with db.transaction() as session:
        escalation = await session.get_one(Escalation, crisis.escalation_id)
        operator_rows = (await session.scalars(select(Message).where(Message.role == Role.OPERATOR))).all()
    assert escalation.status == EscalationStatus.ACKNOWLEDGED and escalation.operator == "olena"
    assert len(operator_rows) == 1
    assert await actions(db) == [
        ("crisis-layer", "safe_reply"),
        ("olena", "take"),
        ("olena", "operator_message"),
        ("olena", "release"),
    ]


async def test_only_an_operator_lowers_the_sticky_level(db, settings) -> None:
    dialogue, handoff, _, _ = await setup(db, settings)
    crisis = await dialogue.handle(Incoming("test", "u", "CRISIS"))
    assert (await dialogue.handle(Incoming("test", "u", "ok"))).level == Level.CRISIS
    assert await handoff.resolve(crisis.escalation_id, "olena", lower_to=Level.NONE)
    assert (await dialogue.handle(Incoming("test", "u", "ok again"))).level == Level.NONE
    assert ("olena", "resolved") in await actions(db)


async def test_unacknowledged_escalation_is_realerted(db, settings) -> None:
    dialogue, handoff, _, recorder = await setup(db, settings)
    crisis = await dialogue.handle(Incoming("test", "u", "CRISIS"))
    assert await handoff.realert_overdue(older_than_s=3600) == 0  # alerted just now
    assert await handoff.realert_overdue(older_than_s=0) == 1
    assert [a.kind for a in recorder.alerts] == ["escalation", "realert"]
    await handoff.acknowledge(crisis.escalation_id, "olena")
    assert await handoff.realert_overdue(older_than_s=0) == 0
    async with db.transaction() as session:
        assert (await session.get_one(Escalation, crisis.escalation_id)).alert_count == 2


async def test_user_asks_for_a_person(db, settings) -> None:
    dialogue, handoff, _, recorder = await setup(db, settings)
    await dialogue.handle(Incoming("test", "u", "hello"))
    escalation_id = await handoff.request_human("test", "u")
    assert escalation_id is not None
    assert recorder.alerts[-1].kind == "human_requested" and recorder.alerts[-1].escalation_id == escalation_id
    assert await handoff.request_human("test", "u") == escalation_id  # reuses the open escalation
    async with db.transaction() as session:
        assert len((await session.scalars(select(Escalation))).all()) == 1


async def test_operator_actions_on_unknown_ids_are_refused(db, settings) -> None:
    _, handoff, _, recorder = await setup(db, settings)
    assert not await handoff.take(999, "olena")
    assert not await handoff.release(999, "olena")
    assert not await handoff.say(999, "olena", "hi")
    assert not await handoff.acknowledge(999, "olena")
    assert recorder.sent == []


async def test_say_refuses_empty_text_and_channels_that_cannot_push(db, settings) -> None:
    dialogue, handoff, _, recorder = await setup(db, settings)
    await dialogue.handle(Incoming("phone", "caller", "hello"))
    async with db.transaction() as session:
        conversation = await session.scalar(select(Conversation))
    assert not await handoff.say(conversation.id, "olena", "   ")
    assert not await handoff.say(conversation.id, "olena", "hello")  # no sender for "phone"
    assert recorder.sent == []


async def test_an_operator_who_writes_holds_the_conversation(db, settings) -> None:
    dialogue, handoff, backend, recorder = await setup(db, settings)
    await dialogue.handle(Incoming("test", "u", "hello"))
    async with db.transaction() as session:
        conversation = await session.scalar(select(Conversation))
    assert await handoff.say(conversation.id, "olena", "Hi, I'm Olena.")
    held = await dialogue.handle(Incoming("test", "u", "oh, hello Olena"))
    assert held.outcome == Outcome.OPERATOR and len(backend.calls) == 1
    assert recorder.alerts[-1].kind == "user_message" and recorder.alerts[-1].excerpt == "oh, hello Olena"
