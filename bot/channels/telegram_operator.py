"""The operator chat (OPERATOR_CHAT_ID): escalation alerts in, take-over / answer / release out.

Alerts carry a `#conv<id>` tag, so an operator answers a person by replying to the alert (the id is
read back from the replied-to text, which survives restarts and works with several replicas).
Alerts are sent in the background: a person's crisis reply must never wait on the operator chat's
flood limit (groups get about 20 messages a minute).
"""

from __future__ import annotations

import asyncio
import logging
import re

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReactionTypeEmoji, Update, User
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from bot.alerts import Alert
from bot.channels.telegram_send import send_text
from bot.channels.telegram_text import MAX_MESSAGE, clip, tg_text, utf16_len
from bot.crisis.levels import Level
from bot.handoff import LOWER_TO, Handoff, Refused
from bot.metrics import ALERT_FAILURES
from db.engine import DATABASE_ERRORS

log = logging.getLogger(__name__)

LEVEL_ICONS = {"emergency": "🆘", "crisis": "🔴", "concern": "🟠", "distress": "🟡", "none": "⚪"}
DRAIN_S = 10.0  # how long shutdown waits for alerts still being sent

_CONVERSATION_TAG = re.compile(r"#conv(\d+)\b")
_BUTTON_DATA = re.compile(r"^op:(take|ack):(\d+)$")
_DONE_TEXTS = {
    "take": "operator_taken",
    "release": "operator_released",
    "ack": "operator_acknowledged",
    "resolve": "operator_resolved",
}

Context = ContextTypes.DEFAULT_TYPE


def format_alert(alert: Alert) -> tuple[str, InlineKeyboardMarkup | None]:
    """The alert message and its buttons; the excerpt is the only part of the person's words shown,
    cut so that the alert stays one message: an operator answers by replying to it, and only a
    message that carries the header's `#conv` tag can be answered."""
    fields: dict[str, object] = {"level": alert.level}
    if alert.kind == "user_message":
        key = "operator_user_message"
    else:
        key = "operator_alert" if alert.conversation_id is not None else "operator_alert_no_conversation"
        fields |= {
            "icon": LEVEL_ICONS.get(alert.level, "⚠️"),
            "title": _title(alert.kind),
            "channel": alert.channel,
            "tags": f" · signals: {', '.join(alert.tags)}" if alert.tags else "",
            "escalation": f" · escalation {alert.escalation_id}" if alert.escalation_id is not None else "",
        }
    if alert.conversation_id is not None:
        fields["conversation"] = alert.conversation_id
    room = MAX_MESSAGE - utf16_len(tg_text(key, **fields, excerpt="“”"))
    body = tg_text(key, **fields, excerpt=f"“{clip(alert.excerpt, room)}”" if alert.excerpt else "")
    if key != "operator_alert":
        return body, None
    buttons = [InlineKeyboardButton(tg_text("operator_take_button"), callback_data=f"op:take:{alert.conversation_id}")]
    if alert.escalation_id is not None:
        buttons.append(
            InlineKeyboardButton(tg_text("operator_ack_button"), callback_data=f"op:ack:{alert.escalation_id}")
        )
    return body, InlineKeyboardMarkup([buttons])


def conversation_tag(message_text: str) -> int | None:
    """The conversation a bot message in the operator chat is about: the `#conv` tag of its first
    line, which the bot writes; later lines may quote the person, who could write such a tag too."""
    found = _CONVERSATION_TAG.search(message_text.partition("\n")[0])
    return int(found[1]) if found else None


def _title(kind: str) -> str:
    try:
        return tg_text(f"operator_title_{kind}")
    except KeyError:  # a kind of alert newer than this module
        return kind


def operator_name(user: User | None) -> str:
    """How an operator is recorded in the audit trail: their stable Telegram id."""
    return f"telegram:{user.id}" if user else "telegram:unknown"


def _display(user: User | None) -> str:
    if user is None:
        return "an operator"
    return f"@{user.username}" if user.username else user.full_name


def _number(args: list[str] | None) -> int | None:
    return int(args[0]) if args and args[0].isdigit() else None


class OperatorChat:
    """Alerts to the operator chat, and the commands operators use there."""

    def __init__(self, handoff: Handoff, chat_id: int) -> None:
        self.handoff = handoff
        self.chat_id = chat_id
        self.bot: Bot | None = None
        self._sending: dict[asyncio.Task[None], int | None] = {}  # alerts being sent, by the person's user id

    def install(self, application: Application) -> None:
        here = filters.Chat(self.chat_id) & filters.UpdateType.MESSAGE
        application.add_handlers(
            [
                CommandHandler(["take", "release", "ack", "resolve"], self.command, here),
                CommandHandler("say", self.say, here),
                MessageHandler(here & filters.REPLY & filters.TEXT & ~filters.COMMAND, self.reply),
                CallbackQueryHandler(self.on_button, _BUTTON_DATA),
            ]
        )
        self.bot = application.bot

    # --- alerts out --------------------------------------------------------------------------

    async def on_alert(self, alert: Alert) -> None:
        """The alert sink: queue the message and return at once (see the module docstring)."""
        task = asyncio.create_task(self._deliver(alert))
        self._sending[task] = alert.user_id
        task.add_done_callback(self._sending.pop)

    async def _deliver(self, alert: Alert) -> None:
        body, markup = format_alert(alert)
        try:
            await send_text(self.bot, self.chat_id, body, markup)
        except Exception as exc:  # a background task: nobody else would see the failure
            ALERT_FAILURES.inc()
            log.error(
                "operator alert %s for conversation %s not delivered: %s",
                alert.kind,
                alert.conversation_id,
                type(exc).__name__,
            )

    def withdraw(self, user_id: int) -> None:
        """Drop the alerts about a person who deleted their data that are still waiting their turn
        (the chat takes about one message a second, so a burst of alerts queues)."""
        for task, about in list(self._sending.items()):
            if about == user_id:
                task.cancel()

    async def drain(self) -> None:
        """Let alerts still being sent finish (bounded), so a shutdown does not swallow one."""
        if self._sending:
            _, late = await asyncio.wait(set(self._sending), timeout=DRAIN_S)
            for task in late:
                task.cancel()

    # --- operator commands -------------------------------------------------------------------

    async def _act(self, action: str, number: int, user: User | None, lower_to: Level | None = None) -> str:
        """One handoff step by an operator; returns the line that tells the operator chat what happened."""
        try:
            step = await self.handoff.act(action, number, operator_name(user), lower_to)
        except DATABASE_ERRORS:
            log.exception("database failed on an operator's /%s", action)
            return tg_text("operator_database_down")
        key = _DONE_TEXTS[action] if step else f"operator_{step.status}"
        conversation = step.conversation_id if step.conversation_id is not None else number
        fields = {"conversation": conversation, "escalation": number, "holder": step.holder, "reason": step.reason}
        return tg_text(key, operator=_display(user), **fields)

    async def command(self, update: Update, context: Context) -> None:
        """/take ID, /release ID, /ack ESCALATION, /resolve ESCALATION [none|distress|concern]."""
        message = update.effective_message
        action = message.text.split()[0].lstrip("/").split("@")[0].lower()
        number = _number(context.args)
        lower = context.args[1].lower() if action == "resolve" and len(context.args) > 1 else None
        if number is None or (lower is not None and lower not in LOWER_TO):
            await message.reply_text(tg_text("operator_usage"))
            return
        lower_to = LOWER_TO[lower] if lower is not None else None
        await message.reply_text(await self._act(action, number, update.effective_user, lower_to))

    async def say(self, update: Update, context: Context) -> None:
        """/say CONVERSATION TEXT"""
        message = update.effective_message
        _, _, rest = message.text.partition(" ")
        target, _, words = rest.strip().partition(" ")
        if not target.isdigit() or not words.strip():
            await message.reply_text(tg_text("operator_usage"))
            return
        await self._send_to_person(message, int(target), words.strip(), operator_name(update.effective_user))

    async def reply(self, update: Update, context: Context) -> None:
        """A reply to an alert (or any bot message tagged #conv<id>) goes to that person; a reply to a
        bot message that names nobody is answered with how to write to someone, never dropped unseen."""
        message = update.effective_message
        replied = message.reply_to_message
        if replied.from_user is None or replied.from_user.id != context.bot.id:
            return
        conversation = conversation_tag(replied.text or replied.caption or "")
        if conversation is None:
            await message.reply_text(tg_text("operator_untagged"))
            return
        await self._send_to_person(message, conversation, message.text, operator_name(update.effective_user))

    async def _send_to_person(self, message: Message, conversation: int, words: str, operator: str) -> None:
        """Deliver, then confirm with 👍, or say why it was not (the operator believes they answered)."""
        try:
            step = await self.handoff.say(conversation, operator, words)
        except Refused as exc:  # the channel would not deliver it; nothing stored
            log.warning("operator message to conversation %s not delivered: %s", conversation, type(exc).__name__)
            await message.reply_text(tg_text("operator_refused", conversation=conversation, reason=exc))
            return
        except DATABASE_ERRORS:
            log.exception("database failed on an operator message for conversation %s", conversation)
            await message.reply_text(tg_text("operator_say_database_down", conversation=conversation))
            return
        if step:
            await message.set_reaction(ReactionTypeEmoji("👍"))
        else:
            fields = {"conversation": conversation, "escalation": conversation, "holder": None, "reason": step.reason}
            await message.reply_text(tg_text(f"operator_{step.status}", **fields))

    async def on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query.message is None or query.message.chat.id != self.chat_id:  # a forged press elsewhere
            await query.answer()
            return
        action, number = _BUTTON_DATA.match(query.data or "").groups()
        await query.answer()
        outcome = await self._act(action, int(number), update.effective_user)
        if query.message.is_accessible:
            await query.message.reply_text(outcome, do_quote=True)
        else:  # a deleted alert: Telegram would refuse a reply quoting it
            await context.bot.send_message(self.chat_id, outcome)
