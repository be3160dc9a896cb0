"""What a person sees in a private chat, in webhook and polling mode: the reply, the commands, the
buttons, typing, long replies, non-text messages, and the bot's behaviour in groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.channels.telegram_text import MAX_MESSAGE, tg_text, utf16_len
from bot.crisis.layer import CrisisLayer
from bot.testing.fake_bot_api import BOT_ID, BOT_USERNAME, callback_update, message_update
from bot.texts import text
from db.models import Conversation, ConversationStatus, Escalation, Message, Persona, User
from tests.doubles import EchoBackend
from tests.telegram_harness import MODES, sqlite, telegram_bot

pytestmark = pytest.mark.parametrize("mode", MODES)


@pytest.fixture(scope="module")
def crisis_layer() -> CrisisLayer:
    return CrisisLayer.load()


CHAT = 4242


def _buttons(call) -> list[str]:  # type: ignore[no-untyped-def]
    return [b["callback_data"] for row in call.params["reply_markup"]["inline_keyboard"] for b in row]


async def test_message_gets_model_reply_with_feedback_buttons(tmp_path: Path, mode: str) -> None:
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(CHAT, text="I had a long day", language_code="pl"))
        assert await bot.api.wait_for_messages(CHAT, 1) == ["echo: I had a long day"]
        reply = (await bot.messages(CHAT))[-1]
        assert _buttons(bot.api.calls_of("sendMessage", CHAT)[0]) == [f"fb:{reply.id}:1", f"fb:{reply.id}:-1"]
        assert (await bot.user(CHAT)).locale == "pl"  # from Telegram's language_code

        await bot.deliver(callback_update(CHAT, f"fb:{reply.id}:-1"))
        await bot.api.wait_for(lambda api: api.calls_of("editMessageReplyMarkup"))
        assert (await bot.messages(CHAT))[-1].feedback == -1
        assert "👎 ✓" in str(bot.api.calls_of("editMessageReplyMarkup")[0].params["reply_markup"])
        answer = bot.api.calls_of("answerCallbackQuery")[0].params
        assert answer["text"] == tg_text("feedback_thanks", "pl")


async def test_feedback_on_someone_elses_reply_is_not_stored(tmp_path: Path, mode: str) -> None:
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(CHAT, text="hello"))
        await bot.api.wait_for_messages(CHAT, 1)
        reply = (await bot.messages(CHAT))[-1]
        await bot.deliver(callback_update(777, f"fb:{reply.id}:1"))  # a forged button press from another chat
        await bot.api.wait_for(lambda api: api.calls_of("answerCallbackQuery"))
        assert (await bot.messages(CHAT))[-1].feedback is None
        assert not bot.api.calls_of("editMessageReplyMarkup")


async def test_start_explains_the_bot_privacy_helplines_and_help(tmp_path: Path, mode: str, crisis_layer) -> None:
    async with telegram_bot(sqlite(tmp_path), mode, safety=crisis_layer) as bot:
        await bot.deliver(message_update(CHAT, text="/start", language_code="pl"))
        (welcome,) = await bot.api.wait_for_messages(CHAT, 1)
        assert welcome.startswith("Cześć") and "/forget" in welcome and "/human" in welcome
        assert "800 70 2222" in welcome and "112" in welcome  # a Polish helpline and the emergency number
        await bot.deliver(message_update(CHAT, text="/help", language_code="pl"))
        assert "/persona" in (await bot.api.wait_for_messages(CHAT, 2))[1]
        await bot.deliver(message_update(CHAT, text="/nonsense", language_code="pl"))
        assert (await bot.api.wait_for_messages(CHAT, 3))[2] == tg_text("unknown_command", "pl")
        assert await bot.count(Message) == 0  # commands are not conversation turns


async def test_persona_keyboard_choice_and_own_lines(tmp_path: Path, mode: str) -> None:
    backend = EchoBackend()
    async with telegram_bot(sqlite(tmp_path), mode, backend=backend) as bot:
        await bot.deliver(message_update(CHAT, text="/persona"))
        await bot.api.wait_for_messages(CHAT, 1)
        assert _buttons(bot.api.calls_of("sendMessage", CHAT)[0]) == [
            "persona:listener",
            "persona:friend",
            "persona:coach",
        ]

        await bot.deliver(callback_update(CHAT, "persona:coach", message_id=55))
        await bot.api.wait_for(lambda api: api.calls_of("editMessageText"))
        edit = bot.api.calls_of("editMessageText")[0].params
        assert edit["message_id"] == 55 and "Grounding coach" in edit["text"]
        async with bot.service.db.transaction() as session:
            coach = await session.scalar(select(Persona).where(Persona.key == "coach"))
        assert (await bot.user(CHAT)).persona_id == coach.id

        await bot.deliver(message_update(CHAT, text="/persona\nI am a retired teacher.\nI love gardening."))
        await bot.api.wait_for_messages(CHAT, 2)
        assert (await bot.user(CHAT)).persona_lines == ["I am a retired teacher.", "I love gardening."]
        await bot.deliver(message_update(CHAT, text="hi"))
        await bot.api.wait_for_messages(CHAT, 3)
        system = [m.content for m in backend.calls[-1] if m.role == "system"]
        assert system == ["I am a retired teacher.", "I love gardening."]


async def test_persona_lines_at_risk_are_answered_as_a_message_not_spoken_by_the_model(
    tmp_path: Path, mode: str
) -> None:
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(CHAT, text="/persona I am someone who will do CRISIS tonight"))
        (reply,) = await bot.api.wait_for_messages(CHAT, 1)
        assert reply == "You matter. Please call 112 or a helpline now."  # the safe words
        assert (await bot.user(CHAT)).persona_lines is None
        assert [m.text for m in await bot.messages(CHAT)][0] == "I am someone who will do CRISIS tonight"
        assert await bot.count(Escalation) == 1
        long = "/persona " + "I can't take it any more. " * 20 + "CRISIS"  # past the persona's length limit
        await bot.deliver(message_update(CHAT, text=long))
        assert (await bot.api.wait_for_messages(CHAT, 2))[1] == reply  # screened all the same


async def test_reset_starts_a_new_conversation(tmp_path: Path, mode: str) -> None:
    backend = EchoBackend()
    async with telegram_bot(sqlite(tmp_path), mode, backend=backend) as bot:
        await bot.deliver(message_update(CHAT, text="first"))
        await bot.api.wait_for_messages(CHAT, 1)
        await bot.deliver(message_update(CHAT, text="/reset"))
        assert (await bot.api.wait_for_messages(CHAT, 2))[1] == text("reset", "en")
        async with bot.service.db.transaction() as session:
            statuses = list(await session.scalars(select(Conversation.status)))
        assert statuses == [ConversationStatus.RESET]
        await bot.deliver(message_update(CHAT, text="second"))
        await bot.api.wait_for_messages(CHAT, 3)
        assert [m.content for m in backend.calls[-1] if m.role != "system"] == ["second"]  # nothing from before


async def test_forget_asks_first_then_deletes_everything(tmp_path: Path, mode: str) -> None:
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(CHAT, text="something personal"))
        await bot.api.wait_for_messages(CHAT, 1)
        await bot.deliver(message_update(CHAT, text="/forget"))
        await bot.api.wait_for_messages(CHAT, 2)
        assert _buttons(bot.api.calls_of("sendMessage", CHAT)[1]) == ["forget:yes", "forget:no"]
        assert await bot.count(User) == 1  # asking deletes nothing

        await bot.deliver(callback_update(CHAT, "forget:no"))
        await bot.api.wait_for(lambda api: len(api.calls_of("editMessageText")) == 1)
        assert bot.api.calls_of("editMessageText")[0].params["text"] == tg_text("forget_kept", "en")
        assert await bot.count(Message) == 2

        await bot.deliver(callback_update(CHAT, "forget:yes"))
        await bot.api.wait_for(lambda api: len(api.calls_of("editMessageText")) == 2)
        assert bot.api.calls_of("editMessageText")[1].params["text"] == text("forgotten", "en")
        assert await bot.count(User) == 0 and await bot.count(Message) == 0


async def test_a_deletion_the_database_could_not_do_is_told(tmp_path: Path, mode: str, monkeypatch) -> None:
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(CHAT, text="something personal"))
        await bot.api.wait_for_messages(CHAT, 1)

        async def broken(*args: object) -> None:
            raise OperationalError("DELETE", {}, Exception("database is locked"))

        monkeypatch.setattr(bot.service.dialogue, "forget", broken)
        await bot.deliver(callback_update(CHAT, "forget:yes"))
        assert (await bot.api.wait_for_messages(CHAT, 2))[1] == text("forget_failed", "en")
        assert not bot.api.calls_of("editMessageText")  # the question stays, to press again


async def test_a_person_abroad_chooses_their_country_and_gets_helplines_they_can_call(
    tmp_path: Path, mode: str
) -> None:
    """A Ukrainian in Poland: their language alone would show Ukraine's 7333, unreachable from there."""
    async with telegram_bot(sqlite(tmp_path), mode, safety=CrisisLayer.load()) as bot:
        await bot.deliver(message_update(CHAT, text="/country", language_code="uk"))
        await bot.api.wait_for_messages(CHAT, 1)
        assert _buttons(bot.api.calls_of("sendMessage", CHAT)[0]) == [
            "country:UA",
            "country:PL",
            "country:GB",
            "country:US",
            "country:ZZ",
        ]
        await bot.deliver(callback_update(CHAT, "country:PL", language_code="uk"))
        await bot.api.wait_for(lambda api: api.calls_of("editMessageText"))
        assert "800 70 2222" in bot.api.calls_of("editMessageText")[0].params["text"]
        assert (await bot.user(CHAT)).country == "PL"
        await bot.deliver(message_update(CHAT, text="Я більше не можу, хочу покінчити з собою", language_code="uk"))
        (_, safe) = await bot.api.wait_for_messages(CHAT, 2)
        assert "800 70 2222" in safe and "7333" not in safe

        await bot.deliver(callback_update(CHAT, "country:ZZ", language_code="uk"))  # somewhere else
        await bot.api.wait_for(lambda api: len(api.calls_of("editMessageText")) == 2)
        assert "findahelpline.com" in bot.api.calls_of("editMessageText")[1].params["text"]


async def test_language_choice_changes_the_bots_language(tmp_path: Path, mode: str) -> None:
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(CHAT, text="/language", language_code="en"))
        await bot.api.wait_for_messages(CHAT, 1)
        assert _buttons(bot.api.calls_of("sendMessage", CHAT)[0]) == ["lang:en", "lang:uk", "lang:ru", "lang:pl"]
        await bot.deliver(callback_update(CHAT, "lang:ru"))
        await bot.api.wait_for(lambda api: api.calls_of("editMessageText"))
        assert bot.api.calls_of("editMessageText")[0].params["text"] == tg_text("language_set", "ru")
        assert (await bot.user(CHAT)).locale == "ru"
        await bot.deliver(message_update(CHAT, text="/help", language_code="en"))  # the app still says English
        assert (await bot.api.wait_for_messages(CHAT, 2))[1] == tg_text("help", "ru")


async def test_typing_is_shown_while_a_slow_reply_is_made(tmp_path: Path, mode: str) -> None:
    async with telegram_bot(sqlite(tmp_path), mode, backend=EchoBackend(delay=1.5)) as bot:
        await bot.deliver(message_update(CHAT, text="are you there?"))
        await bot.api.wait_for_messages(CHAT, 1)
        methods = [c.method for c in bot.api.calls if c.params.get("chat_id") == CHAT]
        assert methods == ["sendChatAction", "sendMessage"]
        assert bot.api.calls_of("sendChatAction")[0].params["action"] == "typing"


async def test_long_reply_is_split_into_clean_parts(tmp_path: Path, mode: str) -> None:
    long = " ".join(f"This is sentence {i} of a long story." for i in range(200))  # ~7000 characters
    # The echo model is sent the whole message only if the context budget holds it.
    async with telegram_bot(sqlite(tmp_path), mode, context_tokens=2048) as bot:
        await bot.deliver(message_update(CHAT, text=long))
        parts = await bot.api.wait_for_messages(CHAT, 2)
        assert all(utf16_len(p) <= MAX_MESSAGE and p.endswith("story.") for p in parts)
        assert " ".join(parts) == f"echo: {long}"
        calls = bot.api.calls_of("sendMessage", CHAT)
        assert "reply_markup" not in calls[0].params and "reply_markup" in calls[-1].params  # buttons once, at the end


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        (
            {
                "sticker": {
                    "file_id": "s",
                    "file_unique_id": "s",
                    "type": "regular",
                    "width": 1,
                    "height": 1,
                    "is_animated": False,
                    "is_video": False,
                }
            },
            "sticker",
        ),
        ({"voice": {"file_id": "v", "file_unique_id": "v", "duration": 3}}, "voice"),
        ({"photo": [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]}, "picture"),
        ({"location": {"latitude": 50.45, "longitude": 30.52}}, "other"),
    ],
)
async def test_non_text_messages_get_a_kind_answer(tmp_path: Path, mode: str, extra: dict, kind: str) -> None:
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(CHAT, language_code="uk", **extra))
        assert await bot.api.wait_for_messages(CHAT, 1) == [tg_text(f"not_text_{kind}", "uk")]
        assert await bot.count(Message) == 0


async def test_groups_get_a_pointer_to_a_private_chat_only_when_addressed(tmp_path: Path, mode: str) -> None:
    group = -100123
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(group, text="just people talking", user_id=5))
        mention = f"@{BOT_USERNAME} can you help?"
        await bot.deliver(
            message_update(
                group,
                text=mention,
                user_id=5,
                entities=[{"type": "mention", "offset": 0, "length": len(BOT_USERNAME) + 1}],
            )
        )
        replied = {
            "message_id": 3,
            "date": 0,
            "chat": {"id": group, "type": "supergroup", "title": "g"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Support"},
            "text": "earlier",
        }
        await bot.deliver(message_update(group, text="thanks", user_id=6, reply_to_message=replied))
        await bot.api.wait_for_messages(group, 2)
        await bot.deliver(message_update(group, text="still just people", user_id=5))
        await bot.deliver(message_update(group, text="/start", user_id=7))
        texts = await bot.api.wait_for_messages(group, 3)
        assert texts == [tg_text("group_notice", "en", link=f"https://t.me/{BOT_USERNAME}")] * 3
        assert await bot.count(User) == 0 and await bot.count(Message) == 0  # nothing said in a group is kept


async def test_human_request_opens_an_escalation(tmp_path: Path, mode: str) -> None:
    async with telegram_bot(sqlite(tmp_path), mode) as bot:
        await bot.deliver(message_update(CHAT, text="/human"))
        (answer,) = await bot.api.wait_for_messages(CHAT, 1)
        assert answer.startswith(tg_text("human_requested", "en", helplines="")[:40])
        async with bot.service.db.transaction() as session:
            (escalation,) = list(await session.scalars(select(Escalation)))
        assert escalation.reason == "user asked for a person"
        assert await bot.count(Message) == 0  # asking for a person is not a message to the model
