"""What people see: the handlers for private chats (messages, commands, buttons) and groups.

Every conversation step is the dialogue core's; these handlers translate Telegram updates into turns
and commands, and turn results into messages with buttons. A chat's id is the person's id here.
"""

from __future__ import annotations

import logging
import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from bot.channels.telegram_send import send_text, typing
from bot.channels.telegram_text import tg_text
from bot.crisis.levels import Assessment, Level
from bot.dialogue import Incoming, Outcome
from bot.service import Service
from bot.texts import LANGUAGES, builtin_personas, text
from db import repo
from db.engine import DATABASE_ERRORS

log = logging.getLogger(__name__)

CHANNEL = "telegram"
PERSONA_MAX_LINES, PERSONA_MAX_CHARS = 5, 200
LANGUAGE_NAMES = {"en": "English", "uk": "Українська", "ru": "Русский", "pl": "Polski"}
FEEDBACK = {1: "👍", -1: "👎"}

_FEEDBACK_DATA = re.compile(r"^fb:(\d+):(-?1)$")
_PERSONA_DATA = re.compile(r"^persona:([\w-]+)$")
_LANGUAGE_DATA = re.compile(rf"^lang:({'|'.join(LANGUAGES)})$")
# The countries with their own helplines (bot/crisis/data/helplines.yaml); "ZZ" is any other (the
# international directory), chosen by someone whose language would otherwise suggest the wrong one.
COUNTRY_NAMES = {"UA": "🇺🇦 Україна", "PL": "🇵🇱 Polska", "GB": "🇬🇧 United Kingdom", "US": "🇺🇸 United States"}
OTHER_COUNTRY = "ZZ"
_COUNTRY_DATA = re.compile(rf"^country:({'|'.join([*COUNTRY_NAMES, OTHER_COUNTRY])})$")
_FORGET_DATA = re.compile(r"^forget:(yes|no)$")

Context = ContextTypes.DEFAULT_TYPE


def feedback_buttons(reply_id: int, chosen: int | None = None) -> InlineKeyboardMarkup:
    """👍/👎 under a model reply; the one the person chose is marked, and they can change it."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(emoji + (" ✓" if value == chosen else ""), callback_data=f"fb:{reply_id}:{value}")
                for value, emoji in FEEDBACK.items()
            ]
        ]
    )


def _telegram_language(update: Update) -> str | None:
    user = update.effective_user
    return user.language_code if user else None


class PrivateChat:
    """Handlers for one-to-one chats with people, and the notice for groups."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.dialogue = service.dialogue

    def install(self, application: Application, operator_chat_id: int | None) -> None:
        private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        groups = filters.ChatType.GROUPS & filters.UpdateType.MESSAGE
        if operator_chat_id is not None:  # a group, or one operator's own private chat with the bot
            private &= ~filters.Chat(operator_chat_id)
            groups &= ~filters.Chat(operator_chat_id)
        commands = {
            "start": self.start,
            "help": self.help,
            "persona": self.persona,
            "reset": self.reset,
            "forget": self.forget,
            "human": self.human,
            "language": self.language,
            "country": self.country,
        }
        application.add_handlers([CommandHandler(name, handler, private) for name, handler in commands.items()])
        application.add_handlers(
            [
                MessageHandler(private & filters.COMMAND, self.unknown_command),
                # A caption is what the person said with a picture: it is a turn like any text (and
                # passes the crisis layer), though the picture itself goes unseen.
                MessageHandler(private & (filters.TEXT | filters.CAPTION), self.message),
                MessageHandler(private & ~filters.StatusUpdate.ALL, self.not_text),
                CallbackQueryHandler(self.on_feedback, _FEEDBACK_DATA),
                CallbackQueryHandler(self.on_persona, _PERSONA_DATA),
                CallbackQueryHandler(self.on_language, _LANGUAGE_DATA),
                CallbackQueryHandler(self.on_country, _COUNTRY_DATA),
                CallbackQueryHandler(self.on_forget, _FORGET_DATA),
                MessageHandler(groups, self.group),
            ]
        )

    async def _profile(self, update: Update) -> tuple[str | None, str | None]:
        """The person's language (chosen with /language, else their Telegram app's) and country, if known."""
        try:
            async with self.service.db.transaction() as session:
                user = await repo.find_user(session, CHANNEL, str(update.effective_chat.id))
        except DATABASE_ERRORS:
            log.warning("database unavailable reading a Telegram user's language")
            user = None
        locale = (user.locale if user else None) or _telegram_language(update)
        return locale, user.country if user else None

    async def _locale(self, update: Update) -> str | None:
        return (await self._profile(update))[0]

    async def _helplines(self, update: Update) -> tuple[str | None, str]:
        """The person's language, and where they can reach a human now: their country's helpline and
        emergency number, from the crisis layer (country from the profile or the language's region)."""
        locale, country = await self._profile(update)
        return locale, self.dialogue.safety.safe_reply(Assessment(Level.NONE), locale, country).text

    async def _say(self, update: Update, context: Context, key: str, **fields: object) -> None:
        locale = await self._locale(update)
        await send_text(context.bot, update.effective_chat.id, tg_text(key, locale, **fields))

    # --- the conversation ------------------------------------------------------------------------

    async def message(self, update: Update, context: Context) -> None:
        """One turn: the person's text (or a picture's caption) through the dialogue core, the reply
        back with feedback buttons."""
        message, chat_id = update.effective_message, update.effective_chat.id
        incoming = Incoming(
            CHANNEL,
            str(chat_id),
            message.text if message.text is not None else message.caption,
            channel_message_id=str(message.message_id),
            locale=_telegram_language(update),
        )
        async with typing(context.bot, chat_id):
            result = await self.dialogue.handle(incoming)
        if result.duplicate or not result.reply:  # already answered, or an operator answers
            return
        markup = None
        if result.outcome == Outcome.MODEL and result.reply_id is not None:
            markup = feedback_buttons(result.reply_id)
        await send_text(context.bot, chat_id, result.reply, markup)

    async def not_text(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message.voice or message.video_note or message.audio:
            kind = "voice"
        elif message.sticker:
            kind = "sticker"
        elif message.photo or message.video or message.animation or message.document:
            kind = "picture"
        else:
            kind = "other"
        await self._say(update, context, f"not_text_{kind}")

    async def group(self, update: Update, context: Context) -> None:
        """In a group the bot stays quiet unless addressed, and then points to a private chat."""
        message = update.effective_message
        if not _addressed(message, context.bot.id, context.bot.username):
            return
        notice = tg_text("group_notice", _telegram_language(update), link=f"https://t.me/{context.bot.username}")
        await message.reply_text(notice, do_quote=True)

    # --- commands ----------------------------------------------------------------------------

    async def start(self, update: Update, context: Context) -> None:
        locale, helplines = await self._helplines(update)
        await send_text(context.bot, update.effective_chat.id, tg_text("welcome", locale, helplines=helplines))

    async def help(self, update: Update, context: Context) -> None:
        await self._say(update, context, "help")

    async def unknown_command(self, update: Update, context: Context) -> None:
        await self._say(update, context, "unknown_command")

    async def reset(self, update: Update, context: Context) -> None:
        await self.dialogue.reset(CHANNEL, str(update.effective_chat.id))
        locale = await self._locale(update)
        await send_text(context.bot, update.effective_chat.id, text("reset", locale))

    async def human(self, update: Update, context: Context) -> None:
        locale, helplines = await self._helplines(update)
        try:
            escalation = await self.service.handoff.request_human(CHANNEL, str(update.effective_chat.id))
        except DATABASE_ERRORS:
            log.exception("database failed recording a request for a human")
            escalation = None
        key = "human_requested" if escalation is not None else "human_failed"
        await send_text(context.bot, update.effective_chat.id, tg_text(key, locale, helplines=helplines))

    async def persona(self, update: Update, context: Context) -> None:
        """/persona shows the built-in personas as buttons; /persona LINES sets the person's own."""
        locale = await self._locale(update)
        chat_id = update.effective_chat.id
        message = update.effective_message
        _, *own = message.text.split(None, 1)  # after the command, whatever space or line break follows it
        lines = [line.strip() for line in "".join(own).splitlines() if line.strip()]
        if not lines:
            personas = builtin_personas()
            listing = "\n".join(f"• {p.name}: {p.description}" for p in personas)
            buttons = [[InlineKeyboardButton(p.name, callback_data=f"persona:{p.key}")] for p in personas]
            body = f"{tg_text('persona_choose', locale)}\n\n{listing}"
            await send_text(context.bot, chat_id, body, InlineKeyboardMarkup(buttons))
            return
        words = Incoming(CHANNEL, str(chat_id), "\n".join(lines), str(message.message_id), _telegram_language(update))
        if (result := await self.dialogue.answered_if_at_risk(words)) is not None:  # first, however long
            if result.reply and not result.duplicate:
                await send_text(context.bot, chat_id, result.reply)
        elif len(lines) > PERSONA_MAX_LINES or any(len(line) > PERSONA_MAX_CHARS for line in lines):
            reply = tg_text("persona_too_long", locale, lines=PERSONA_MAX_LINES, chars=PERSONA_MAX_CHARS)
            await send_text(context.bot, chat_id, reply)
        else:
            await self.dialogue.set_persona(CHANNEL, str(chat_id), lines=lines)
            await send_text(context.bot, chat_id, tg_text("persona_own", locale))

    async def language(self, update: Update, context: Context) -> None:
        buttons = [[InlineKeyboardButton(LANGUAGE_NAMES[code], callback_data=f"lang:{code}")] for code in LANGUAGES]
        locale = await self._locale(update)
        markup = InlineKeyboardMarkup(buttons)
        await send_text(context.bot, update.effective_chat.id, tg_text("language_choose", locale), markup)

    async def forget(self, update: Update, context: Context) -> None:
        """Deleting everything is asked twice: the command, then a button."""
        locale = await self._locale(update)
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(tg_text("forget_yes", locale), callback_data="forget:yes"),
                    InlineKeyboardButton(tg_text("forget_no", locale), callback_data="forget:no"),
                ]
            ]
        )
        await send_text(context.bot, update.effective_chat.id, tg_text("forget_confirm", locale), markup)

    # --- buttons -----------------------------------------------------------------------------

    async def on_feedback(self, update: Update, context: Context) -> None:
        query = update.callback_query
        match = _FEEDBACK_DATA.match(query.data or "")
        reply_id, value = int(match[1]), int(match[2])
        stored = await self._store_feedback(update.effective_chat.id, reply_id, value)
        if not stored:
            await query.answer()
            return
        await query.answer(tg_text("feedback_thanks", await self._locale(update)))
        await _edit_markup(query.message, feedback_buttons(reply_id, chosen=value))

    async def _store_feedback(self, chat_id: int, reply_id: int, value: int) -> bool:
        """Only on a bot reply to this very person: callback data comes from their client."""
        try:
            async with self.service.db.transaction() as session:
                user = await repo.find_user(session, CHANNEL, str(chat_id))
                reply = await repo.get_message(session, reply_id)
                if user is None or reply is None or reply.user_id != user.id:
                    return False
                return await repo.set_feedback(session, reply_id, value)
        except DATABASE_ERRORS:
            log.warning("database unavailable storing feedback on message %s", reply_id)
            return False

    async def on_persona(self, update: Update, context: Context) -> None:
        query = update.callback_query
        key = _PERSONA_DATA.match(query.data or "")[1]
        chosen = await self.dialogue.set_persona(CHANNEL, str(update.effective_chat.id), key=key)
        locale = await self._locale(update)
        await query.answer()
        if chosen:
            name = next(p.name for p in builtin_personas() if p.key == key)
            await query.edit_message_text(tg_text("persona_set", locale, name=name))
        else:
            await query.edit_message_text(tg_text("persona_unknown", locale))

    async def country(self, update: Update, context: Context) -> None:
        """/country: where the person is now, so the helplines shown are ones they can call."""
        locale = await self._locale(update)
        names = [*COUNTRY_NAMES.items(), (OTHER_COUNTRY, tg_text("country_other", locale))]
        buttons = [[InlineKeyboardButton(name, callback_data=f"country:{code}")] for code, name in names]
        markup = InlineKeyboardMarkup(buttons)
        await send_text(context.bot, update.effective_chat.id, tg_text("country_choose", locale), markup)

    async def on_country(self, update: Update, context: Context) -> None:
        query = update.callback_query
        code = _COUNTRY_DATA.match(query.data or "")[1]
        await self.dialogue.set_country(CHANNEL, str(update.effective_chat.id), code)
        await query.answer()
        locale, helplines = await self._helplines(update)
        await query.edit_message_text(tg_text("country_set", locale, helplines=helplines))

    async def on_language(self, update: Update, context: Context) -> None:
        query = update.callback_query
        code = _LANGUAGE_DATA.match(query.data or "")[1]
        await self.dialogue.set_locale(CHANNEL, str(update.effective_chat.id), code)
        await query.answer()
        await query.edit_message_text(tg_text("language_set", code))

    async def on_forget(self, update: Update, context: Context) -> None:
        query = update.callback_query
        locale = await self._locale(update)  # read before the answer deletes it
        await query.answer()
        if _FORGET_DATA.match(query.data or "")[1] == "yes":
            try:
                await self.dialogue.forget(CHANNEL, str(update.effective_chat.id))
            except DATABASE_ERRORS:
                log.exception("database failed deleting a Telegram user's data")
                await send_text(context.bot, update.effective_chat.id, text("forget_failed", locale))
                return  # the question and its buttons stay, to try again
            await query.edit_message_text(text("forgotten", locale))
        else:
            await query.edit_message_text(tg_text("forget_kept", locale))


async def _edit_markup(message: object, markup: InlineKeyboardMarkup) -> None:
    if not isinstance(message, Message):  # older than 48 hours: Telegram no longer lets us edit it
        return
    try:
        await message.edit_reply_markup(markup)
    except BadRequest as exc:  # "message is not modified": the same button twice
        log.debug("feedback buttons left as they were: %s", exc)


def _addressed(message: Message, bot_id: int, username: str | None) -> bool:
    """In a group: a reply to the bot, an @mention of it, or a command (for it or for every bot)."""
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot_id:
        return True
    mention = f"@{username}".lower() if username else None
    kinds = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION, MessageEntity.BOT_COMMAND]
    for entity, value in {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}.items():
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_id:
            return True
        if entity.type == MessageEntity.MENTION and value.lower() == mention:
            return True
        if entity.type == MessageEntity.BOT_COMMAND and ("@" not in value or value.lower().endswith(mention or "\0")):
            return True
    return False
