"""The phone line end to end through signed webhooks: greeting, turns, silence, holds, crisis transfer, call end."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import text

from bot.channels.twilio_callers import CHANNEL
from bot.channels.twilio_texts import phone_texts, spell_digits
from bot.crisis.levels import Level
from bot.dialogue import Incoming
from bot.settings import Settings
from db import crypto
from db.models import AuditEvent, Conversation, ConversationStatus, Escalation, Message, Role, User
from tests.doubles import EchoBackend
from tests.twilio_fake import CRISIS_WORDS, UA_NUMBER, Call, crisis_layer, phone_line, query, twilio_settings

TEXTS = phone_texts()
HOTLINE = "+380800500335"


def read_digit_by_digit(spoken: str) -> bool:
    """Helpline numbers are said one digit at a time ('1 1 2'), never as '112' ("one hundred twelve")."""
    return re.search(r"\d \d \d", spoken) is not None and re.search(r"\d{3}", spoken) is None


def gather_attributes(reply) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(reply.one("Gather").attrib)


async def test_a_call_is_greeted_by_persona_in_the_callers_language_and_listened_to(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings, encryption_key="at rest")) as line:
        greeting = await Call(line.twilio).start()

        assert greeting.status == 200 and greeting.verbs == ["Gather"]
        gather = gather_attributes(greeting)
        action = gather.pop("action")
        assert action.startswith("/twilio/voice/gather?") and query(action) == {
            "n": "1",
            "s": "0",
            "h": "0",
            "x": "0",
            "l": "uk",
        }
        assert gather == {
            "input": "speech",
            "method": "POST",
            "language": "uk-UA",
            "speechModel": "experimental_conversations",
            "speechTimeout": "2",
            "timeout": "7",
            "actionOnEmptyResult": "true",
            "profanityFilter": "false",
        }
        say = greeting.one("Gather/Say")
        assert say.text == TEXTS.greeting("listener", "uk")
        assert say.attrib == {"voice": "Google.uk-UA-Standard-A", "language": "uk-UA"}

        [user] = await line.rows(User)
        assert (user.channel, user.external_id) == (CHANNEL, crypto.lookup_hash(UA_NUMBER))
        assert (user.contact, user.locale, user.country) == (UA_NUMBER, "uk-UA", "UA")
        async with line.service.db.transaction() as session:
            raw = (await session.execute(text("SELECT * FROM users"))).mappings().one()
        assert UA_NUMBER not in str(dict(raw)) and raw["contact"].startswith("enc:"), "stored encrypted and hashed"


async def test_an_english_caller_hears_the_configured_voice(settings: Settings) -> None:
    configured = twilio_settings(settings, twilio_voice="Polly.Joanna-Neural", twilio_speech_model="phone_call")
    async with phone_line(configured) as line:
        greeting = await Call(line.twilio, number="+14155550100").start()
    assert greeting.one("Gather").get("language") == "en-US"
    assert greeting.one("Gather").get("speechModel") == "phone_call"
    assert greeting.one("Gather/Say").attrib == {"voice": "Polly.Joanna-Neural", "language": "en-US"}


async def test_speech_runs_the_turn_and_the_reply_is_said_inside_the_next_gather(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        call = Call(line.twilio)
        reply = await call.say(await call.start(), "I feel lonely tonight")

        assert reply.verbs == ["Gather"]
        assert reply.one("Gather/Say").text == "echo: I feel lonely tonight"
        assert query(reply.one("Gather").get("action") or "")["n"] == "2"
        [said, answer] = await line.rows(Message)
        assert (said.role, said.text, said.channel_message_id) == (Role.USER, "I feel lonely tonight", f"{call.sid}:1")
        assert (answer.role, answer.reply_to_id) == (Role.BOT, said.id)


async def test_twilio_retrying_the_same_gather_gets_the_same_reply_and_one_turn(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        call = Call(line.twilio)
        greeting = await call.start()
        first, again = await asyncio.gather(call.say(greeting, "hello there"), call.say(greeting, "hello there"))

        assert first.said() == again.said() == ["echo: hello there"]
        assert len(line.backend.calls) == 1
        assert await line.count(Message) == 2


async def test_silence_is_met_with_a_reprompt_then_a_gentle_goodbye(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        call = Call(line.twilio)
        reprompt = await call.silence(await call.start())
        assert reprompt.verbs == ["Gather"] and reprompt.said() == [TEXTS.text("reprompt", "uk")]
        assert query(reprompt.next_url())["s"] == "1"

        goodbye = await call.silence(reprompt)
        assert goodbye.verbs == ["Say", "Hangup"] and goodbye.said() == [TEXTS.text("goodbye", "uk")]
        await call.hang_up()
        assert await line.count(Message) == 0 and await line.count(Conversation) == 0
        [ended] = await line.rows(AuditEvent)
        assert (ended.action, ended.conversation_id) == ("call_ended", None)

        # Speaking after one silence starts the count again.
        answer = await call.say(reprompt, "sorry, I am here")
        assert query(answer.next_url())["s"] == "0"


async def test_a_slow_model_gets_a_holding_phrase_and_the_redirect_picks_the_reply_up(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings, twilio_hold_after_s=0.1), backend=EchoBackend(delay=0.5)) as line:
        call = Call(line.twilio)
        held = await call.say(await call.start(), "it has been a long week")

        assert held.verbs == ["Say", "Redirect"]
        assert held.said() == [TEXTS.holding("uk", 0)]
        redirect = held.one("Redirect")
        assert redirect.get("method") == "POST" and redirect.text and redirect.text.startswith("/twilio/voice/pickup?")
        assert query(redirect.text)["h"] == "1" and query(redirect.text)["n"] == "1"

        reply, holds = held, 0
        while reply.verbs != ["Gather"]:
            reply, holds = await call.follow(reply), holds + 1
            assert holds < 20
        assert reply.said() == ["echo: it has been a long week"]
        assert query(reply.next_url())["n"] == "2"
        assert len(line.backend.calls) == 1


async def test_after_the_last_hold_the_caller_hears_an_apology_and_is_listened_to(settings: Settings) -> None:
    slow = twilio_settings(settings, twilio_hold_after_s=0.05, twilio_max_holds=2)
    async with phone_line(slow, backend=EchoBackend(delay=3)) as line:
        call = Call(line.twilio)
        held = await call.say(await call.start(), "are you there")
        still = await call.follow(held)
        assert still.verbs == ["Say", "Redirect"] and query(still.next_url())["h"] == "2"
        apology = await call.follow(still)
        assert apology.verbs == ["Gather"] and apology.said() == [TEXTS.text("slow", "uk")]
        assert query(apology.next_url())["n"] == "2"


async def test_the_pickup_finds_the_reply_in_the_database_on_another_replica(settings: Settings) -> None:
    # Two replicas behind one load balancer: Twilio calls the public URL, either replica answers.
    configured = twilio_settings(settings, twilio_hold_after_s=0.1, public_url="https://help.example.org")
    async with phone_line(configured, backend=EchoBackend(delay=0.5)) as first, phone_line(configured) as second:
        call = Call(first.twilio)
        held = await call.say(await call.start(), "do you remember me")
        assert held.verbs == ["Say", "Redirect"]

        elsewhere = Call(second.twilio, sid=call.sid)
        reply = held
        while reply.verbs != ["Gather"]:
            reply = await elsewhere.follow(reply)
        assert reply.said() == ["echo: do you remember me"]
        assert not second.backend.calls, "the second replica only read the first one's reply"


async def test_a_crisis_is_transferred_to_the_hotline_without_waiting_for_the_model(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings, hotline_number=HOTLINE), backend=EchoBackend(delay=30)) as line:
        call = Call(line.twilio)
        transfer = await call.say(await call.start(), CRISIS_WORDS)

        assert transfer.verbs == ["Say", "Say", "Dial"]
        safe, connecting = transfer.said()
        assert connecting == TEXTS.text("transfer", "uk")
        assert read_digit_by_digit(safe)
        dial = transfer.one("Dial")
        assert dial.text == HOTLINE and dial.get("answerOnBridge") == "true" and dial.get("timeout") == "30"
        assert (dial.get("action") or "").startswith("/twilio/voice/dial-status?") and dial.get("method") == "POST"
        assert not line.backend.calls
        [escalation] = await line.rows(Escalation)
        assert escalation.level >= Level.CONCERN
        assert [a.kind for a in line.alerts] == ["escalation"] and line.alerts[0].channel == CHANNEL

        fallback = await call.dial_ended(transfer, "no-answer")
        spoken = spell_digits(HOTLINE)
        assert fallback.verbs == ["Say", "Gather"]
        assert fallback.said() == [TEXTS.text("transfer_failed", "uk", number=spoken), TEXTS.text("stay", "uk")]
        assert fallback.said()[0].count(spoken) == 2
        assert query(fallback.next_url())["x"] == "1"
        [event] = await line.rows(AuditEvent, AuditEvent.action == "hotline_transfer")
        assert event.detail == {"status": "no-answer", "seconds": 0} and event.escalation_id == escalation.id


async def test_a_completed_transfer_offers_to_keep_talking(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings, hotline_number=HOTLINE)) as line:
        call = Call(line.twilio)
        transfer = await call.say(await call.start(), CRISIS_WORDS)
        after = await call.dial_ended(transfer, "completed")
        assert after.verbs == ["Gather"] and after.said() == [TEXTS.text("after_transfer", "uk")]


async def test_without_a_hotline_the_numbers_are_spoken_slowly_and_the_line_stays_open(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        call = Call(line.twilio)
        crisis = await call.say(await call.start(), CRISIS_WORDS)

        assert crisis.verbs == ["Say", "Gather"]
        safe, stay = crisis.said()
        assert stay == TEXTS.text("stay", "uk")
        assert read_digit_by_digit(safe)
        assert await line.count(Escalation) == 1


async def test_a_crisis_behind_a_slow_turn_is_not_held(settings: Settings) -> None:
    configured = twilio_settings(settings, hotline_number=HOTLINE, twilio_hold_after_s=0.2, twilio_max_holds=0)
    async with phone_line(configured, backend=EchoBackend(delay=2)) as line:
        call = Call(line.twilio)
        held = await call.say(await call.start(), "I just need to talk")
        apology = await call.follow(held)  # no holds allowed: listen again while the model still works
        assert apology.said() == [TEXTS.text("slow", "uk")]

        transfer = await call.say(apology, CRISIS_WORDS)  # queued behind the slow turn
        assert transfer.verbs == ["Say", "Say", "Dial"]
        for _ in range(50):  # the queued turn still records the escalation once the first one finishes
            if await line.count(Escalation):
                break
            await asyncio.sleep(0.1)
        assert await line.count(Escalation) == 1


class _AssessWatch:
    """The real crisis layer, noting for each full `assess` whether it ran on the event loop's thread."""

    def __init__(self) -> None:
        self.layer = crisis_layer()
        self.on_event_loop: list[bool] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.layer, name)

    def assess(self, text: str, recent: object) -> object:
        try:
            asyncio.get_running_loop()
            self.on_event_loop.append(True)
        except RuntimeError:
            self.on_event_loop.append(False)
        return self.layer.assess(text, recent)


async def test_the_full_crisis_check_of_a_slow_turn_runs_off_the_event_loop(settings: Settings) -> None:
    """Its slow components take tens of ms of CPU: on the loop they would stall every other turn."""
    watch = _AssessWatch()
    configured = twilio_settings(settings, hotline_number=HOTLINE, twilio_hold_after_s=0.1)
    async with phone_line(configured, backend=EchoBackend(delay=1), safety=watch) as line:
        call = Call(line.twilio)
        held = await call.say(await call.start(), "I just need to talk")
        assert held.said() == [TEXTS.holding("uk", 0)]
        assert watch.on_event_loop == [False]


async def test_call_end_is_recorded_and_closes_the_conversation_and_a_second_call_continues(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        first = Call(line.twilio)
        await first.say(await first.start(), "my name is Olha")
        ended = await first.hang_up(duration=42)
        assert ended.status == 200 and ended.verbs == []
        [conversation] = await line.rows(Conversation)
        assert conversation.status == ConversationStatus.CLOSED
        [event] = await line.rows(AuditEvent, AuditEvent.action == "call_ended")
        assert event.detail == {"status": "completed", "seconds": 42}

        second = Call(line.twilio)
        welcome = await second.start()
        assert welcome.said() == [TEXTS.text("welcome_back", "uk")]
        await second.say(welcome, "it's me again")

        [user] = await line.rows(User)
        messages = await line.rows(Message)
        assert {m.user_id for m in messages} == {user.id}
        assert [m.text for m in messages if m.role == Role.USER] == ["my name is Olha", "it's me again"]
        assert [c.status for c in await line.rows(Conversation)] == [ConversationStatus.CLOSED, ConversationStatus.OPEN]


async def test_while_an_operator_holds_the_conversation_the_caller_is_told_so(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings, twilio_sms_from="+15005550006")) as line:
        call = Call(line.twilio)
        greeting = await call.start()
        await line.service.dialogue.handle(Incoming(CHANNEL, crypto.lookup_hash(UA_NUMBER), "hi", locale="uk"))
        [conversation] = await line.rows(Conversation)
        assert await line.service.handoff.take(conversation.id, "olena")

        held = await call.say(greeting, "is anyone there")
        assert held.said() == [TEXTS.text("operator", "uk"), TEXTS.text("operator_sms", "uk")]
        assert held.verbs == ["Gather"]
        assert [a.kind for a in line.alerts] == ["user_message"]


async def test_a_crisis_while_an_operator_holds_the_call_is_still_transferred(settings: Settings) -> None:
    configured = twilio_settings(settings, twilio_sms_from="+15005550006", hotline_number=HOTLINE)
    async with phone_line(configured) as line:
        call = Call(line.twilio)
        greeting = await call.start()
        await line.service.dialogue.handle(Incoming(CHANNEL, crypto.lookup_hash(UA_NUMBER), "hi", locale="uk"))
        [conversation] = await line.rows(Conversation)
        assert await line.service.handoff.take(conversation.id, "olena")  # who can only text the caller

        transfer = await call.say(greeting, CRISIS_WORDS)
        assert transfer.verbs == ["Say", "Say", "Dial"] and transfer.one("Dial").text == HOTLINE
        assert [a.kind for a in line.alerts] == ["escalation"]


async def test_a_caller_who_hid_their_number_cannot_be_held(settings: Settings) -> None:
    """No SMS can reach them, so a hold would only silence the bot on their call."""
    async with phone_line(twilio_settings(settings, twilio_sms_from="+15005550006")) as line:
        call = Call(line.twilio, number="+266696687")
        first = await call.say(await call.start(), "hello")
        [conversation] = await line.rows(Conversation)
        step = await line.service.handoff.take(conversation.id, "olena")
        assert not step and "no phone number" in (step.reason or "")
        assert [c.operator for c in await line.rows(Conversation)] == [None]
        assert (await call.say(first, "are you there")).said() == ["echo: are you there"]


async def test_a_withheld_number_is_a_new_person_for_each_call(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        for _ in range(2):
            call = Call(line.twilio, number="+266696687")
            greeting = await call.start()
            assert greeting.one("Gather").get("language") == "en-US"
            await call.say(greeting, "hello")
        users = await line.rows(User)
        assert len(users) == 2 and all(u.contact is None for u in users)
