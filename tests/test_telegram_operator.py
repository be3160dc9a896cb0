"""The operator chat: crisis alerts, taking over, writing to the person, releasing."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.alerts import Alert
from bot.channels.telegram_operator import format_alert
from bot.channels.telegram_text import tg_text
from bot.crisis.layer import CrisisLayer
from bot.crisis.levels import Level
from bot.dialogue import Incoming
from bot.testing.fake_bot_api import BOT_ID, callback_update, message_update
from bot.texts import text
from db.models import Conversation, Escalation, EscalationStatus, Message, Role
from tests.doubles import EchoBackend, SecondLookSafety
from tests.telegram_harness import OPERATORS, sqlite, telegram_bot

PERSON = 8181
OPERATOR = 99


def _alert_message(text: str, message_id: int = 500) -> dict:
    """The bot's alert as it appears inside an operator's reply."""
    chat = {"id": OPERATORS, "type": "supergroup", "title": "operators"}
    return {
        "message_id": message_id,
        "date": 0,
        "chat": chat,
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "S"},
        "text": text,
    }


async def test_crisis_with_model_down_gets_helpline_reply_and_operator_alert(tmp_path: Path) -> None:
    backend = EchoBackend()
    backend.fail = True
    words = "Я більше не можу, хочу покінчити з собою сьогодні вночі"
    async with telegram_bot(
        sqlite(tmp_path), "webhook", backend=backend, safety=CrisisLayer.load(), operator_chat_id=OPERATORS
    ) as bot:
        await bot.deliver(message_update(PERSON, text=words, language_code="uk"))
        (reply,) = bot.api.texts_to(PERSON)
        assert "7333" in reply and "112" in reply  # Ukraine's suicide-prevention line and emergency number
        assert "reply_markup" not in bot.api.calls_of("sendMessage", PERSON)[0].params  # no 👍/👎 under it
        assert not backend.calls  # the model was never needed
        (alert,) = await bot.api.wait_for_messages(OPERATORS, 1)
        async with bot.service.db.transaction() as session:
            escalation = await session.scalar(select(Escalation))
        assert f"#conv{escalation.conversation_id}" in alert and ("crisis" in alert or "emergency" in alert)
        assert "покінчити з собою" in alert  # the excerpt operators need to judge
        assert f"/take {escalation.conversation_id}" in alert
        markup = bot.api.calls_of("sendMessage", OPERATORS)[0].params["reply_markup"]
        data = [b["callback_data"] for row in markup["inline_keyboard"] for b in row]
        assert data == [f"op:take:{escalation.conversation_id}", f"op:ack:{escalation.id}"]


async def test_a_pictures_caption_passes_the_crisis_layer(tmp_path: Path) -> None:
    photo = [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]
    words = "I'm going to end my life tonight"
    async with telegram_bot(sqlite(tmp_path), "webhook", safety=CrisisLayer.load(), operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, photo=photo, caption=words))
        (reply,) = bot.api.texts_to(PERSON)
        assert reply != tg_text("not_text_picture", "en") and "112" in reply  # the safe reply, not "I can't see it"
        (alert,) = await bot.api.wait_for_messages(OPERATORS, 1)
        assert "end my life" in alert
        assert [m.text for m in await bot.messages(PERSON) if m.role == Role.USER] == [words]


async def test_take_answer_by_reply_and_say_then_release(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text="hello"))
        conversation = (await bot.messages(PERSON))[0].conversation_id

        await bot.deliver(message_update(OPERATORS, text=f"/take {conversation}", user_id=OPERATOR))
        assert "holds" in bot.api.texts_to(OPERATORS)[-1]
        async with bot.service.db.transaction() as session:
            assert (await session.get(Conversation, conversation)).operator == f"telegram:{OPERATOR}"

        await bot.deliver(message_update(PERSON, text="is someone there?"))
        # The person was told a person joined; the model is silent now.
        assert bot.api.texts_to(PERSON) == ["echo: hello", text("with_operator", "en")]
        forwarded = (await bot.api.wait_for_messages(OPERATORS, 2))[-1]
        assert f"#conv{conversation}" in forwarded and "is someone there?" in forwarded

        reply = message_update(
            OPERATORS, text="Yes, I'm Anna from the team.", user_id=OPERATOR, reply_to_message=_alert_message(forwarded)
        )
        await bot.deliver(reply)
        assert bot.api.texts_to(PERSON)[-1] == "Yes, I'm Anna from the team."
        assert bot.api.calls_of("setMessageReaction")  # the operator sees it went out

        await bot.deliver(message_update(OPERATORS, text=f"/say {conversation} Take your time.", user_id=OPERATOR))
        assert bot.api.texts_to(PERSON)[-1] == "Take your time."
        operator_lines = [m.text for m in await bot.messages(PERSON) if m.role == Role.OPERATOR]
        assert operator_lines == ["Yes, I'm Anna from the team.", "Take your time."]

        await bot.deliver(message_update(OPERATORS, text=f"/release {conversation}", user_id=OPERATOR))
        await bot.deliver(message_update(PERSON, text="thank you"))
        assert bot.api.texts_to(PERSON)[-1] == "echo: thank you"  # back with the bot


async def test_buttons_take_over_and_acknowledge(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "polling", operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text="CRISIS"))
        await bot.api.wait_for_messages(OPERATORS, 1)
        async with bot.service.db.transaction() as session:
            escalation = await session.scalar(select(Escalation))
        # The alert was deleted since: Telegram sends a stub the confirmation cannot quote.
        await bot.deliver(callback_update(OPERATORS, f"op:ack:{escalation.id}", user_id=OPERATOR, inaccessible=True))
        await bot.api.wait_for_messages(OPERATORS, 2)
        await bot.deliver(callback_update(OPERATORS, f"op:take:{escalation.conversation_id}", user_id=OPERATOR))
        texts = await bot.api.wait_for_messages(OPERATORS, 3)
        assert "acknowledged" in texts[1] and "holds" in texts[2]
        quoted = ["reply_parameters" in call.params for call in bot.api.calls_of("sendMessage", OPERATORS)[1:]]
        assert quoted == [False, True]
        async with bot.service.db.transaction() as session:
            escalation = await session.get(Escalation, escalation.id)
            conversation = await session.get(Conversation, escalation.conversation_id)
        assert escalation.status == EscalationStatus.ACKNOWLEDGED and conversation.operator == f"telegram:{OPERATOR}"


async def test_operator_commands_work_only_in_the_operator_chat(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text="hello"))
        conversation = (await bot.messages(PERSON))[0].conversation_id
        await bot.deliver(message_update(PERSON, text=f"/take {conversation}"))
        await bot.deliver(callback_update(PERSON, f"op:take:{conversation}"))  # a forged button
        async with bot.service.db.transaction() as session:
            assert (await session.get(Conversation, conversation)).operator is None
        assert bot.api.texts_to(PERSON)[-1] == tg_text("unknown_command", "en")


async def test_bad_operator_input_gets_usage_or_not_found(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        for command in ("/take", "/take abc", "/say 5", "/resolve 1 emergency"):
            await bot.deliver(message_update(OPERATORS, text=command, user_id=OPERATOR))
        await bot.deliver(message_update(OPERATORS, text="/take 999", user_id=OPERATOR))
        await bot.deliver(message_update(OPERATORS, text="/say 999 hello", user_id=OPERATOR))
        texts = bot.api.texts_to(OPERATORS)
        assert texts[:4] == [tg_text("operator_usage")] * 4
        assert texts[4:] == [tg_text("operator_not_found", escalation=999)] * 2
        assert await bot.count(Message) == 0


async def test_human_request_alerts_operators(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text="/human"))
        (alert,) = await bot.api.wait_for_messages(OPERATORS, 1)
        assert tg_text("operator_title_human_requested") in alert and re.search(r"#conv\d+", alert)


async def test_operator_alert_survives_a_429(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        bot.api.fail("sendMessage", 429, retry_after=1)  # whichever goes first, the alert or the reply
        await bot.deliver(message_update(PERSON, text="CRISIS"))
        await bot.api.wait_for_messages(OPERATORS, 1, timeout=5)
        await bot.api.wait_for_messages(PERSON, 1, timeout=5)


def test_alert_without_conversation_says_why() -> None:
    alert = Alert("escalation", None, None, None, "emergency", "telegram", "help me", ("imminent",))
    text, markup = format_alert(alert)
    assert markup is None and "🆘" in text and "database was unavailable" in text and "imminent" in text


async def test_a_late_crisis_verdict_reaches_the_chat_after_the_reply_and_alerts_operators(tmp_path: Path) -> None:
    async with telegram_bot(
        sqlite(tmp_path),
        "webhook",
        safety=SecondLookSafety(delay=0.1),
        operator_chat_id=OPERATORS,
        crisis_second_look_wait_s=0.0,
    ) as bot:
        await bot.deliver(message_update(PERSON, text="HIDDEN words"))
        texts = await bot.api.wait_for_messages(PERSON, 2)
        assert texts == ["echo: HIDDEN words", "You matter. Please call 112 or a helpline now."]
        (alert,) = await bot.api.wait_for_messages(OPERATORS, 1)
        assert "HIDDEN words" in alert and "concern" in alert


async def test_a_crisis_only_the_embedding_model_reads_still_gets_the_safe_reply_and_an_alert(tmp_path: Path) -> None:
    words = "made a playlist for my funeral today. weirdly calm about it"  # no rule, no n-gram: the embedding
    layer = CrisisLayer.load()
    assert (await layer.screen(words, [])).assessment.level < Level.CONCERN
    async with telegram_bot(sqlite(tmp_path), "webhook", safety=layer, operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text=words))
        (alert,) = await bot.api.wait_for_messages(OPERATORS, 1)
        assert "concern" in alert and "playlist" in alert
        # The safe reply comes instead of the model's, or after it when the check was late.
        await bot.api.wait_for(lambda api: any("findahelpline.com" in t for t in api.texts_to(PERSON)))


async def test_a_long_message_to_the_holding_operator_stays_one_answerable_alert(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text="hello"))
        conversation = (await bot.messages(PERSON))[0].conversation_id
        await bot.deliver(message_update(OPERATORS, text=f"/take {conversation}", user_id=OPERATOR))
        await bot.deliver(message_update(PERSON, text="I have so much to tell you 😔 " * 150))  # ~4500 characters
        forwarded = (await bot.api.wait_for_messages(OPERATORS, 2))[-1]
        assert len(bot.api.texts_to(OPERATORS)) == 2  # one message, not split
        assert forwarded.rstrip().endswith(f"/release {conversation} to hand back to the bot.")
        reply = message_update(
            OPERATORS, text="I'm reading.", user_id=OPERATOR, reply_to_message=_alert_message(forwarded)
        )
        await bot.deliver(reply)
        assert bot.api.texts_to(PERSON)[-1] == "I'm reading."


async def test_a_tag_in_the_persons_own_words_does_not_route_an_operators_reply(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text="hello"))  # someone else, conversation 1
        alert, _ = format_alert(Alert("escalation", None, None, None, "crisis", "telegram", "please help #conv1"))
        reply = message_update(OPERATORS, text="I'm here.", user_id=OPERATOR, reply_to_message=_alert_message(alert))
        await bot.deliver(reply)
        assert bot.api.texts_to(PERSON) == ["echo: hello"]
        assert bot.api.texts_to(OPERATORS) == [tg_text("operator_untagged")]  # told, not silently dropped


async def test_an_operator_is_told_when_the_person_cannot_be_reached(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text="hello"))
        conversation = (await bot.messages(PERSON))[0].conversation_id
        bot.api.fail("sendMessage", 403)  # the person blocked the bot
        await bot.deliver(message_update(OPERATORS, text=f"/say {conversation} Are you safe?", user_id=OPERATOR))
        (told,) = bot.api.texts_to(OPERATORS)
        assert told.startswith(f"⚠️ Not sent to #conv{conversation}: Telegram refused it") and "403" in told
        assert [m.role for m in await bot.messages(PERSON)] == [Role.USER, Role.BOT]  # nothing stored


async def test_operators_are_told_why_a_take_did_not_happen(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:
        await bot.deliver(message_update(PERSON, text="hello"))
        conversation = (await bot.messages(PERSON))[0].conversation_id
        await bot.deliver(message_update(OPERATORS, text=f"/take {conversation}", user_id=OPERATOR))
        await bot.deliver(message_update(OPERATORS, text=f"/take {conversation}", user_id=OPERATOR + 1))
        assert bot.api.texts_to(OPERATORS)[-1] == tg_text(
            "operator_held_by_other", conversation=conversation, holder=f"telegram:{OPERATOR}"
        )
        await bot.service.dialogue.handle(Incoming("web", "w", "hello from the web chat"))
        async with bot.service.db.transaction() as session:
            web = await session.scalar(select(Conversation).order_by(Conversation.id.desc()).limit(1))
        await bot.deliver(message_update(OPERATORS, text=f"/take {web.id}", user_id=OPERATOR))
        assert bot.api.texts_to(OPERATORS)[-1] == tg_text(
            "operator_unreachable", conversation=web.id, reason="the web channel cannot carry them"
        )


async def test_a_database_failure_on_an_operator_command_is_told(tmp_path: Path, monkeypatch) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS) as bot:

        async def broken(*args: object) -> None:
            raise OperationalError("UPDATE", {}, Exception("database is locked"))

        monkeypatch.setattr(bot.service.handoff, "take", broken)
        await bot.deliver(message_update(OPERATORS, text="/take 1", user_id=OPERATOR))
        assert bot.api.texts_to(OPERATORS) == [tg_text("operator_database_down")]


async def test_an_operator_chat_that_is_one_operators_private_chat_gets_operator_commands(tmp_path: Path) -> None:
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATOR) as bot:
        await bot.deliver(message_update(PERSON, text="hello"))
        conversation = (await bot.messages(PERSON))[0].conversation_id
        await bot.deliver(message_update(OPERATOR, text=f"/take {conversation}"))
        assert "holds" in bot.api.texts_to(OPERATOR)[-1]
        await bot.deliver(message_update(OPERATOR, text="just a note to myself"))  # not a turn with the bot
        assert await bot.count(Message) == 2  # the person's hello and its reply


async def test_alerts_still_queued_for_a_person_who_deletes_their_data_are_not_sent(tmp_path: Path) -> None:
    others, deleting = 7001, 7002
    # Two messages a second to a chat, one at once: the second alert waits its turn.
    paced = {"telegram_chat_rate": 0.5, "telegram_chat_burst": 1}
    async with telegram_bot(sqlite(tmp_path), "webhook", operator_chat_id=OPERATORS, **paced) as bot:
        await bot.deliver(message_update(others, text="CRISIS"))
        await bot.api.wait_for_messages(OPERATORS, 1)
        await bot.deliver(message_update(deleting, text="CRISIS at home"))  # its alert is queued
        assert await bot.service.dialogue.forget("telegram", str(deleting))
        await asyncio.sleep(2.5)  # past its turn
        (alert,) = bot.api.texts_to(OPERATORS)
        assert "at home" not in alert
