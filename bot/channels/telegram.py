"""The Telegram channel: a python-telegram-bot Application over the dialogue core.

`mount(app, service)` switches it on when TELEGRAM_TOKEN is set: webhook mode (the route lives in
the service's own aiohttp server) when TELEGRAM_WEBHOOK_URL is set, long polling otherwise. Every
Bot API call goes through one rate-limited, retrying bot, alerts to operators included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from telegram import Bot, Update
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot.channels.telegram_chat import CHANNEL, PrivateChat
from bot.channels.telegram_http import AiohttpRequest
from bot.channels.telegram_limits import PacedRateLimiter
from bot.channels.telegram_operator import OperatorChat
from bot.channels.telegram_order import ChatOrderedProcessor
from bot.channels.telegram_send import send_text
from bot.channels.telegram_webhook import WEBHOOK_PATH, WebhookRoute, webhook_secret
from bot.handoff import Refused
from bot.service import Service, StartupError
from bot.settings import Settings
from bot.texts import text

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
POLL_TIMEOUT_S = 30  # long-polling wait per getUpdates call
RECONNECT_FIRST_S, RECONNECT_MAX_S = 1.0, 60.0
CONNECTION_POOL = 128  # concurrent Bot API requests (replies of different chats in parallel)
# Each webhook call is answered once its reply went out, so Telegram's parallel connections bound the
# turns in flight; 100 is the most Telegram allows (its default is 40).
WEBHOOK_CONNECTIONS = 100


def build_application(settings: Settings, *, webhook: bool) -> Application:
    """The PTB Application with the project's rate limiter, per-chat ordering and connection pool."""
    assert settings.telegram_token
    builder = (
        ApplicationBuilder()
        .token(settings.telegram_token)
        .base_url(settings.telegram_api_url)
        .rate_limiter(
            PacedRateLimiter(
                overall_rate=settings.telegram_max_rate,
                chat_rate=settings.telegram_chat_rate,
                chat_burst=settings.telegram_chat_burst,
            )
        )
        .concurrent_updates(ChatOrderedProcessor(settings.telegram_concurrent_updates))
        .request(AiohttpRequest(CONNECTION_POOL))
        .job_queue(None)
    )
    if webhook:
        builder = builder.updater(None)
    else:
        builder = builder.get_updates_request(AiohttpRequest(1))
    return builder.build()


class TelegramChannel:
    """One bot: connects, receives updates (webhook or polling), and wires operators and handoff."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.settings = service.settings
        self.webhook_url = self.settings.telegram_webhook_url
        self.application = build_application(self.settings, webhook=self.webhook_url is not None)
        PrivateChat(service).install(self.application, self.settings.operator_chat_id)
        self.operators: OperatorChat | None = None
        if self.settings.operator_chat_id is not None:
            self.operators = OperatorChat(service.handoff, self.settings.operator_chat_id)
            self.operators.install(self.application)
        self.application.add_error_handler(self._on_error)
        self.ready = asyncio.Event()
        self._connecting: asyncio.Task[None] | None = None

    @property
    def bot(self) -> Bot:
        return self.application.bot

    def webhook_route(self) -> WebhookRoute:
        return WebhookRoute(
            webhook_secret(self.settings), lambda: self.bot if self.ready.is_set() else None, self.process
        )

    async def process(self, update: Update) -> None:
        """Handle one update under the same concurrency and per-chat order as polling."""
        await self.application.update_processor.process_update(update, self.application.process_update(update))

    async def send_to_user(self, external_id: str, body: str) -> None:
        """Handoff's sender: an operator's words to a person's chat (Telegram's refusal, such as a
        person who blocked the bot, is told to the operator)."""
        try:
            await send_text(self.bot, int(external_id), body)
        except TelegramError as exc:
            raise Refused(f"Telegram refused it: {exc.message}") from exc

    # --- life cycle --------------------------------------------------------------------------

    async def _open(self) -> None:
        """Connect (getMe), start processing, then ask Telegram for updates; each step is repeatable."""
        await self.application.initialize()
        if not self.application.running:
            await self.application.start()
        if self.webhook_url:
            await self.bot.set_webhook(
                self.webhook_url,
                secret_token=webhook_secret(self.settings),
                allowed_updates=ALLOWED_UPDATES,
                max_connections=WEBHOOK_CONNECTIONS,
            )
        elif not self.application.updater.running:
            await self.application.updater.start_polling(timeout=POLL_TIMEOUT_S, allowed_updates=ALLOWED_UPDATES)
        self.service.handoff.register_sender(CHANNEL, self.send_to_user)
        if self.operators is not None:
            self.service.alerts.subscribe(self.operators.on_alert, self.operators.withdraw)
        self.ready.set()
        log.info("Telegram channel up as @%s (%s)", self.bot.username, "webhook" if self.webhook_url else "polling")

    async def _open_checked(self) -> None:
        """`_open`, with Telegram refusing our set-up (token, webhook URL) told apart from an outage."""
        try:
            await self._open()
        except InvalidToken:
            raise StartupError("Telegram rejected SUPPORTBOT_TELEGRAM_TOKEN (getMe answered Unauthorized)") from None
        except BadRequest as exc:  # a NetworkError subclass, but no retry will fix it
            raise StartupError(f"Telegram refused the channel's set-up: {exc.message}") from None

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self.ready.is_set():
            await asyncio.sleep(delay)
            try:
                await self._open_checked()
            except StartupError as exc:
                log.error("%s; the Telegram channel stays off", exc)
                return
            except NetworkError as exc:
                delay = min(delay * 2, RECONNECT_MAX_S)
                log.warning("Bot API still unreachable (%s); next try in %.0fs", type(exc).__name__, delay)

    async def start(self) -> None:
        """A refused token or webhook stops the service at once; an unreachable Bot API is retried in the
        background while the rest of the service runs."""
        try:
            await self._open_checked()
        except NetworkError as exc:
            log.warning("Bot API unreachable at start (%s); the rest of the service runs, retrying", type(exc).__name__)
            self._connecting = asyncio.create_task(self._reconnect())

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self.ready.is_set() and self.operators is not None:
            self.service.alerts.unsubscribe(self.operators.on_alert, self.operators.withdraw)
            await self.operators.drain()
        if self.application.updater is not None and self.application.updater.running:
            await self.application.updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()
        self.ready.clear()

    async def running(self, _app: web.Application) -> AsyncIterator[None]:
        """For aiohttp's cleanup_ctx: up while the server runs."""
        await self.start()
        yield
        await self.stop()

    # --- failures ----------------------------------------------------------------------------

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log what failed and where (never the update: it holds the person's words) and still answer."""
        error = context.error
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
        update_id = update.update_id if isinstance(update, Update) else None
        log.error("Telegram update %s failed with %s at %s", update_id, type(error).__name__, where)
        # A person whose message or command failed (a database error, say) still gets an answer; a failed
        # Bot API call was already retried, and a failed button press must not look like a failed reply.
        if not isinstance(update, Update) or update.message is None or isinstance(error, TelegramError):
            return
        if update.message.chat.type == update.message.chat.PRIVATE:
            user = update.effective_user
            try:
                await send_text(
                    self.bot, update.message.chat.id, text("fallback", user.language_code if user else None)
                )
            except TelegramError:
                log.warning("could not tell the chat of update %s about the failure", update_id)


TELEGRAM = web.AppKey("telegram", TelegramChannel)


def mount(app: web.Application, service: Service) -> None:
    """Add the Telegram channel to the service's HTTP app, when TELEGRAM_TOKEN is set."""
    if not service.settings.telegram_enabled:
        return
    channel = TelegramChannel(service)
    app[TELEGRAM] = channel
    if channel.webhook_url:
        app.router.add_post(WEBHOOK_PATH, channel.webhook_route().handle)
    app.cleanup_ctx.append(channel.running)
