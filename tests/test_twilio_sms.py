"""SMS through signed webhooks: replies, redelivery, long replies, STOP/START/HELP/HUMAN, crisis, operator SMS."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import OperationalError

from bot.channels.twilio_callers import CHANNEL
from bot.channels.twilio_sms import SMS_LIMIT, SmsLine, Undeliverable, split_sms
from bot.channels.twilio_texts import phone_texts
from bot.settings import Settings
from bot.texts import text as bot_text
from db import crypto
from db.models import AuditEvent, Conversation, Escalation, Message, User
from tests.doubles import EchoBackend
from tests.twilio_fake import ACCOUNT_SID, CRISIS_WORDS, UA_NUMBER, Call, phone_line, text, twilio_settings

TEXTS = phone_texts()


def messages(reply) -> list[str]:  # type: ignore[no-untyped-def]
    assert reply.status == 200 and all(tag == "Message" for tag in reply.verbs)
    return [m.text or "" for m in reply.root.findall("Message")]


async def test_a_text_gets_the_turns_reply_as_a_message(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        assert messages(await text(line.twilio, "I can't sleep")) == ["echo: I can't sleep"]
        [user] = await line.rows(User)
        assert (user.channel, user.external_id, user.contact, user.country) == (
            CHANNEL,
            crypto.lookup_hash(UA_NUMBER),
            UA_NUMBER,
            "UA",
        )


async def test_a_redelivered_message_gets_the_same_reply_again_and_is_stored_once(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        first = await text(line.twilio, "hello", sid="SM" + "a" * 32)
        again = await text(line.twilio, "hello", sid="SM" + "a" * 32)
        assert messages(first) == messages(again) == ["echo: hello"]
        assert len(line.backend.calls) == 1 and await line.count(Message) == 2


async def test_a_reply_longer_than_one_sms_is_split_into_numbered_parts(settings: Settings) -> None:
    # An ordinary long message (the embedding backstop reads "Sentence number N is here." x150 filler as odd).
    long_text = " ".join(f"Day {i}: we walked to the market, bought bread and cooked dinner." for i in range(60))
    # The echo model is sent the whole message (~4000 characters) only if the context budget holds it.
    async with phone_line(twilio_settings(settings, context_tokens=1024)) as line:
        parts = messages(await text(line.twilio, long_text))
    assert len(parts) == 3 and all(len(part) <= SMS_LIMIT for part in parts)
    assert [part[-5:] for part in parts] == ["(1/3)", "(2/3)", "(3/3)"]
    assert all(part[:-6].endswith(".") for part in parts), "split after a sentence"
    assert " ".join(part[:-6] for part in parts) == f"echo: {long_text}"


def test_split_prefers_paragraphs_then_sentences_then_words() -> None:
    assert split_sms("short") == ["short"]
    paragraph = "a" * 900 + "\n\n" + "b" * 900
    assert split_sms(paragraph) == ["a" * 900 + " (1/2)", "b" * 900 + " (2/2)"]
    words = ("word " * 500).strip()
    parts = split_sms(words)
    assert all(len(p) <= SMS_LIMIT and not p.startswith(" ") for p in parts)
    assert " ".join(p.rsplit(" (", 1)[0] for p in parts) == words
    unbroken = "x" * 4000
    assert "".join(p.rsplit(" (", 1)[0] for p in split_sms(unbroken)) == unbroken


@pytest.mark.parametrize("stop_word", ["STOP", "unsubscribe", " Stop. ", "стоп"])
async def test_stop_opts_out_and_nothing_more_is_answered_or_stored_until_start(
    settings: Settings, stop_word: str
) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        await text(line.twilio, "hi")
        stopped = messages(await text(line.twilio, stop_word))
        assert stopped == [TEXTS.text("sms_stopped", "uk", emergency="112")]
        [user] = await line.rows(User)
        assert user.opted_out

        stored = await line.count(Message)
        assert messages(await text(line.twilio, "are you there?")) == []
        # A risk to life is never ignored: operators hear of it, and the safe words go out if they can.
        [safe] = messages(await text(line.twilio, CRISIS_WORDS))
        assert "112" in safe and [a.kind for a in line.alerts] == ["escalation"]
        assert messages(await text(line.twilio, "help")) == [TEXTS.text("sms_help", "uk", emergency="112")]
        # "yes" re-subscribes an opted-out number
        assert messages(await text(line.twilio, "yes")) == [TEXTS.text("sms_started", "uk", emergency="112")]
        assert await line.count(Message) == stored and len(line.backend.calls) == 1
        [user] = await line.rows(User)
        assert not user.opted_out
        assert messages(await text(line.twilio, "thank you")) == ["echo: thank you"]
        actions = [e.action for e in await line.rows(AuditEvent)]
        assert actions == ["sms_opt_out", "sms_opt_in"]


async def test_delete_erases_everything_stored_about_the_number(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        await text(line.twilio, "I called you last night too")
        assert await line.count(Message) == 2
        # Asked first: one word must not erase an open crisis conversation by accident.
        assert messages(await text(line.twilio, "Delete")) == [TEXTS.text("sms_forget_confirm", "uk")]
        assert await line.count(Message) == 2
        assert messages(await text(line.twilio, "видалити  так!")) == [bot_text("forgotten", "uk")]
        assert await line.count(User) == 0 and await line.count(Message) == 0 and await line.count(Conversation) == 0
        assert "DELETE" in TEXTS.text("sms_help", "en", emergency="112")


async def test_a_deletion_the_database_could_not_do_is_told(settings: Settings, monkeypatch) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        await text(line.twilio, "hello")

        async def broken(*args: object) -> None:
            raise OperationalError("DELETE", {}, Exception("database is locked"))

        monkeypatch.setattr(line.service.dialogue, "forget", broken)
        assert messages(await text(line.twilio, "DELETE YES")) == [bot_text("forget_failed", "uk")]


async def test_start_and_yes_are_ordinary_words_for_a_subscribed_number(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        assert messages(await text(line.twilio, "yes")) == ["echo: yes"]
        assert messages(await text(line.twilio, "START")) == ["echo: START"]
        assert messages(await text(line.twilio, TEXTS.text("sms_started", "en"))) != []


async def test_help_describes_the_service_with_the_local_emergency_number(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        [us] = messages(await text(line.twilio, "HELP", number="+14155550100"))
        [ua] = messages(await text(line.twilio, "help"))
    assert us == TEXTS.text("sms_help", "en", emergency="911") and "911" in us and "STOP" in us
    assert ua == TEXTS.text("sms_help", "uk", emergency="112")
    assert not line.backend.calls


async def test_human_asks_operators_for_a_person(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        [answer] = messages(await text(line.twilio, "HUMAN"))
        assert answer == TEXTS.text("sms_human", "uk", emergency="112")
        [escalation] = await line.rows(Escalation)
        assert escalation.reason == "user asked for a person"
        assert [(a.kind, a.channel) for a in line.alerts] == [("human_requested", CHANNEL)]


async def test_a_crisis_by_text_gets_the_safe_reply_and_escalates(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        [safe] = messages(await text(line.twilio, CRISIS_WORDS))
        assert safe and not safe.startswith("echo:") and not line.backend.calls
        assert await line.count(Escalation) == 1 and [a.kind for a in line.alerts] == ["escalation"]


async def test_calls_and_texts_from_one_number_are_one_person(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        call = Call(line.twilio)
        await call.say(await call.start(), "I called first")
        await text(line.twilio, "and now I text")
        assert await line.count(User) == 1 and await line.count(Conversation) == 1
        # The model saw the call's words when answering the text.
        assert "I called first" in [m.content for m in line.backend.calls[-1]]


async def test_operators_write_to_a_texter_by_sms_through_the_rest_api(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings, twilio_sms_from="+15005550006")) as line:
        await text(line.twilio, "hello")
        [conversation] = await line.rows(Conversation)
        assert await line.service.handoff.say(conversation.id, "olena", "Hi, I'm Olena from the team.")

        [request] = line.api.requests
        assert request["method"] == "POST"
        assert request["url"] == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        assert request["data"] == {"To": UA_NUMBER, "From": "+15005550006", "Body": "Hi, I'm Olena from the team."}

        await text(line.twilio, "STOP")
        with pytest.raises(Undeliverable):
            await line.service.handoff.say(conversation.id, "olena", "are you still there?")
        assert len(line.api.requests) == 1


async def test_a_refused_sms_is_undeliverable_without_the_number_in_its_message(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with phone_line(twilio_settings(settings, twilio_sms_from="+15005550006")) as line:
        await text(line.twilio, "hello")
        [conversation] = await line.rows(Conversation)
        line.api.refusal = {"code": 21211, "message": f"The 'To' number {UA_NUMBER} is not valid.", "status": 400}
        with pytest.raises(Undeliverable) as refused:
            await line.service.handoff.say(conversation.id, "olena", "are you there?")
    assert str(refused.value) == "Twilio refused the SMS: error 21211, HTTP 400"
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert UA_NUMBER not in caplog.text


async def test_a_messaging_service_sends_operator_messages_too(settings: Settings) -> None:
    service_sid = "MG" + "2" * 32
    async with phone_line(twilio_settings(settings, twilio_sms_from=service_sid)) as line:
        await text(line.twilio, "hello")
        [conversation] = await line.rows(Conversation)
        await line.service.handoff.say(conversation.id, "olena", "x" * 2000)
        bodies = [r["data"]["Body"] for r in line.api.requests]
        assert [r["data"]["MessagingServiceSid"] for r in line.api.requests] == [service_sid, service_sid]
        assert len(bodies) == 2 and all(len(b) <= SMS_LIMIT for b in bodies)


async def test_a_reply_slower_than_twilio_waits_is_texted_when_ready(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SmsLine, "answer_within_s", 0.1)
    async with phone_line(
        twilio_settings(settings, twilio_sms_from="+15005550006"), backend=EchoBackend(delay=0.5)
    ) as line:
        sid = "SM" + "b" * 32
        first, retry = await text(line.twilio, "slow day", sid=sid), await text(line.twilio, "slow day", sid=sid)
        assert messages(first) == messages(retry) == []
        for _ in range(50):
            if line.api.requests:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert [r["data"] for r in line.api.requests] == [
            {"To": UA_NUMBER, "From": "+15005550006", "Body": "echo: slow day"}
        ]
        assert len(line.backend.calls) == 1


async def test_without_a_sender_a_slow_reply_is_still_answered_in_the_webhook(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SmsLine, "answer_within_s", 0.1)
    async with phone_line(twilio_settings(settings), backend=EchoBackend(delay=0.5)) as line:
        assert messages(await text(line.twilio, "slow day")) == ["echo: slow day"]
