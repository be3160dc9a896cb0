"""`supportbot serve`, `chat` and `db upgrade|downgrade`: the bot process's own commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot import logs
from bot.settings import SettingsError, load_settings

log = logging.getLogger(__name__)


def _fail(message: str) -> int:
    print(f"supportbot: {message}", file=sys.stderr)
    return 2


async def _serve() -> None:
    from aiohttp import web

    from bot.app import create_app
    from bot.service import Service

    settings = load_settings()
    service = await Service.start(settings)
    runner = web.AppRunner(create_app(service), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("serving on http://%s:%d", settings.http_host, settings.http_port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await service.close()


async def _chat() -> None:
    from bot.channels.terminal import TerminalChat
    from bot.service import Service

    service = await Service.start(load_settings())
    if service.dialogue.backend is None:
        print("(the model is not available: you will get fallback replies; the crisis layer still works)")
    try:
        await TerminalChat(service.dialogue).run()
    finally:
        await service.close()


async def _db(action: str, revision: str) -> None:
    from db import migrate

    settings = load_settings()
    if action == "upgrade":
        await migrate.upgrade(settings.database_url, revision)
    else:
        await migrate.downgrade(settings.database_url, revision)


def _run(main: object) -> int:
    """Run a coroutine; turn start-up failures into one line and exit code 2."""
    from bot.service import StartupError
    from db.engine import DatabaseUnavailable

    try:
        asyncio.run(main)  # type: ignore[arg-type]
    except (SettingsError, StartupError, DatabaseUnavailable) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


def _with_settings(handler):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        try:
            settings = load_settings()
        except SettingsError as exc:
            return _fail(str(exc))
        logs.configure("WARNING" if args.command == "chat" else settings.log_level)
        return handler(args)

    return run


def register(commands: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the bot process (HTTP, Telegram, Twilio)")
    serve.set_defaults(func=_with_settings(lambda args: _run(_serve())))
    chat = commands.add_parser("chat", help="talk to the dialogue core in the terminal")
    chat.set_defaults(func=_with_settings(lambda args: _run(_chat())))
    db = commands.add_parser("db", help="database migrations").add_subparsers(dest="db_action", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations (default: to the newest)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=_with_settings(lambda args: _run(_db("upgrade", args.revision))))
    downgrade = db.add_parser("downgrade", help="revert migrations to REVISION ('base' empties the database)")
    downgrade.add_argument("revision")
    downgrade.set_defaults(func=_with_settings(lambda args: _run(_db("downgrade", args.revision))))
