"""Operators take over, write to the user, release; overdue escalations are re-alerted; all audited."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.alerts import Alert
from bot.crisis.levels import Level
from bot.dialogue import Dialogue, Incoming, Outcome
from bot.handoff import Handoff, Refused, Status
from bot.texts import text
from db.models import AuditEvent, Conversation, Escalation, EscalationStatus, Message, Role, User, utcnow
from tests.doubles import EchoBackend, KeywordSafety, SecondLookSafety


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


async def conversation_of(db, user: str = "u") -> Conversation:  # type: ignore[no-untyped-def]
    async with db.transaction() as session:
        return await session.scalar(
            select(Conversation).join(User).where(User.external_id == user).order_by(Conversation.id.desc()).limit(1)
        )


async def test_a_crisis_while_an_operator_holds_still_gets_the_safe_words_and_an_escalation(db, settings) -> None:
    dialogue, handoff, backend, recorder = await setup(db, settings)
    await dialogue.handle(Incoming("test", "u", "hello"))
    held = await conversation_of(db)
    assert await handoff.take(held.id, "olena")

    words = "CRISIS " + "I can't go on. " * 40
    crisis = await dialogue.handle(Incoming("test", "u", words))
    assert crisis.outcome == Outcome.CRISIS and crisis.reply and crisis.escalation_id is not None
    alert = recorder.alerts[-1]
    assert alert.kind == "escalation" and alert.excerpt == " ".join(words.split())  # the holder reads it whole
    assert (await conversation_of(db)).operator == "olena"  # still theirs
    assert len(backend.calls) == 1  # the model stayed silent


async def test_a_late_crisis_verdict_while_an_operator_holds_is_acted_on(db, settings) -> None:
    dialogue = Dialogue(
        db, EchoBackend(), SecondLookSafety(delay=0.05), settings.model_copy(update={"crisis_second_look_wait_s": 0.2})
    )
    recorder = Recorder()
    dialogue.alerts.subscribe(recorder.alert)
    handoff = Handoff(db, dialogue.alerts)
    handoff.register_sender("test", recorder.send)
    dialogue.pusher = handoff
    await dialogue.handle(Incoming("test", "u", "hello"))
    assert await handoff.take((await conversation_of(db)).id, "olena")
    result = await dialogue.handle(Incoming("test", "u", "HIDDEN words"))
    assert result.outcome == Outcome.CRISIS and result.level == Level.CONCERN
    assert [a.kind for a in recorder.alerts] == ["escalation"]


async def test_a_hold_nobody_keeps_lapses_and_the_bot_answers_again(db, settings) -> None:
    dialogue, handoff, backend, recorder = await setup(db, settings)
    dialogue.pusher = handoff
    await dialogue.handle(Incoming("test", "u", "hello"))
    conversation = await conversation_of(db)
    assert await handoff.take(conversation.id, "olena")
    assert await handoff.say(conversation.id, "olena", "I'm here.")
    held = await dialogue.handle(Incoming("test", "u", "thank you"))
    assert held.outcome == Outcome.OPERATOR  # the operator wrote just now

    async with db.transaction() as session:  # fifteen minutes and more of silence from the operator
        stale = await session.get_one(Conversation, conversation.id)
        stale.taken_over_at = utcnow() - timedelta(seconds=settings.handoff_idle_s + 1)
    answered = await dialogue.handle(Incoming("test", "u", "are you still there?"))
    assert answered.outcome == Outcome.MODEL and answered.reply == "echo: are you still there?"
    assert recorder.sent[-1] == ("u", text("operator_away", None))  # told before the bot's reply
    assert recorder.alerts[-1].kind == "hold_lapsed" and recorder.alerts[-1].conversation_id == conversation.id
    assert (await conversation_of(db)).operator is None
    assert ("system", "hold_lapsed") in await actions(db)


async def test_an_operator_who_keeps_writing_keeps_the_hold(db, settings) -> None:
    dialogue, handoff, _, _ = await setup(db, settings)
    await dialogue.handle(Incoming("test", "u", "hello"))
    conversation = await conversation_of(db)
    assert await handoff.take(conversation.id, "olena")
    async with db.transaction() as session:
        stale = await session.get_one(Conversation, conversation.id)
        stale.taken_over_at = utcnow() - timedelta(seconds=settings.handoff_idle_s + 1)
    assert await handoff.say(conversation.id, "olena", "Sorry, I'm back.")  # renews the hold
    assert (await dialogue.handle(Incoming("test", "u", "ok"))).outcome == Outcome.OPERATOR


async def test_a_second_operator_cannot_take_a_held_person(db, settings) -> None:
    dialogue, handoff, _, recorder = await setup(db, settings)
    await dialogue.handle(Incoming("test", "u", "hello"))
    conversation = await conversation_of(db)
    first, second = await asyncio.gather(handoff.take(conversation.id, "olena"), handoff.take(conversation.id, "petro"))
    assert sorted(step.status for step in (first, second)) == [Status.DONE, Status.HELD_BY_OTHER]
    winner = "olena" if first else "petro"
    assert (await conversation_of(db)).operator == winner
    assert (second if first else first).holder == winner
    assert [words for _, words in recorder.sent] == [text("with_operator", None)]  # the person is told once
    again = await handoff.take(conversation.id, winner)  # taking what one holds is harmless
    assert again and len(recorder.sent) == 1


async def test_a_person_whose_channel_cannot_carry_an_operators_words_is_not_held(db, settings) -> None:
    dialogue, handoff, backend, _ = await setup(db, settings)
    await dialogue.handle(Incoming("web", "w", "hello"))  # no sender for the web chat
    conversation = await conversation_of(db, "w")
    step = await handoff.take(conversation.id, "olena")
    assert step.status == Status.UNREACHABLE and (await conversation_of(db, "w")).operator is None
    assert (await dialogue.handle(Incoming("web", "w", "still here"))).outcome == Outcome.MODEL


async def test_operators_act_on_the_persons_open_conversation(db, settings) -> None:
    dialogue, handoff, backend, recorder = await setup(db, settings)
    await dialogue.handle(Incoming("test", "u", "hello"))
    old = await conversation_of(db)
    await dialogue.reset("test", "u")  # the alert's conversation has ended since
    step = await handoff.take(old.id, "olena")
    current = await conversation_of(db)
    assert step and step.conversation_id == current.id != old.id and current.operator == "olena"
    assert (await dialogue.handle(Incoming("test", "u", "hi again"))).outcome == Outcome.OPERATOR
    said = await handoff.say(old.id, "olena", "I'm with you.")
    assert said.conversation_id == current.id
    assert await handoff.release(old.id, "olena")
    assert (await conversation_of(db)).operator is None


async def test_an_escalation_only_moves_forward(db, settings) -> None:
    dialogue, handoff, _, _ = await setup(db, settings)
    crisis = await dialogue.handle(Incoming("test", "u", "CRISIS"))
    assert await handoff.resolve(crisis.escalation_id, "olena")
    late = await handoff.acknowledge(crisis.escalation_id, "petro")
    assert late.status == Status.UNCHANGED
    assert (await handoff.resolve(crisis.escalation_id, "petro")).status == Status.UNCHANGED
    async with db.transaction() as session:
        escalation = await session.get_one(Escalation, crisis.escalation_id)
    assert escalation.status == EscalationStatus.RESOLVED and escalation.operator == "olena"


async def test_an_operator_writing_while_another_takes_leaves_one_holder(db, settings) -> None:
    dialogue, handoff, _, _ = await setup(db, settings)
    for person in ("a", "b", "c"):
        await dialogue.handle(Incoming("test", person, "hello"))
        conversation = await conversation_of(db, person)
        took, wrote = await asyncio.gather(
            handoff.take(conversation.id, "olena"), handoff.say(conversation.id, "petro", "hi")
        )
        holder = (await conversation_of(db, person)).operator
        assert holder == wrote.holder and (holder == "olena") == bool(took)


async def test_a_take_acknowledges_the_persons_escalations_only_once_they_can_be_reached(db, settings) -> None:
    dialogue, handoff, _, recorder = await setup(db, settings)
    crisis = await dialogue.handle(Incoming("test", "u", "CRISIS"))
    old = await conversation_of(db)

    async def refuse(external_id: str, words: str) -> None:
        raise Refused("they blocked the bot")

    handoff.register_sender("test", refuse)
    assert (await handoff.take(old.id, "olena")).status == Status.UNREACHABLE
    async with db.transaction() as session:
        assert (await session.get_one(Escalation, crisis.escalation_id)).status == EscalationStatus.OPEN  # re-alerted

    handoff.register_sender("test", recorder.send)
    await dialogue.reset("test", "u")  # the alert's conversation has ended since
    assert await handoff.take(old.id, "olena")
    async with db.transaction() as session:
        escalation = await session.get_one(Escalation, crisis.escalation_id)
    assert escalation.status == EscalationStatus.ACKNOWLEDGED and escalation.operator == "olena"


async def test_any_failure_to_deliver_an_operators_words_is_a_refusal(db, settings) -> None:
    dialogue, handoff, _, _ = await setup(db, settings)
    await dialogue.handle(Incoming("test", "u", "hello"))

    async def down(external_id: str, words: str) -> None:
        raise ConnectionResetError("peer went away")

    handoff.register_sender("test", down)
    with pytest.raises(Refused, match="ConnectionResetError"):
        await handoff.say((await conversation_of(db)).id, "olena", "are you safe?")
    async with db.transaction() as session:
        assert not (await session.scalars(select(Message).where(Message.role == Role.OPERATOR))).all()
