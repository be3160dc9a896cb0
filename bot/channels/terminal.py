"""`supportbot chat`: the full dialogue core in a terminal, the first thing a newcomer talks to.

The terminal user is keyed by the OS account name, so a conversation survives a restart.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable

from bot.dialogue import Dialogue, Incoming
from bot.texts import builtin_personas, text

CHANNEL = "terminal"
HELP = """Commands:
  /persona            list personas
  /persona KEY        choose a built-in persona
  /persona my: LINE; LINE   speak with your own persona lines
  /reset              start a new conversation
  /forget             delete everything stored about you
  /quit               leave (the conversation is kept)"""


class TerminalChat:
    """A read-eval-print loop over the dialogue turn."""

    def __init__(
        self,
        dialogue: Dialogue,
        user: str | None = None,
        locale: str | None = None,
        read: Callable[[str], str] = input,
        write: Callable[[str], None] = print,
    ) -> None:
        self.dialogue = dialogue
        self.user = user or getpass.getuser()
        self.locale = locale
        self._read, self._write = read, write

    async def run(self) -> None:
        self._write("supportbot — a listening chatbot, not a person or an emergency service. /help for commands.")
        while True:
            try:
                line = await asyncio.to_thread(self._read, "you> ")
            except (EOFError, KeyboardInterrupt):
                self._write("")
                return
            if not await self.handle_line(line):
                return

    async def handle_line(self, line: str) -> bool:
        """Act on one typed line; False when the user wants to leave."""
        command, _, argument = line.strip().partition(" ")
        match command:
            case "/quit" | "/exit":
                return False
            case "/help":
                self._write(HELP)
            case "/reset":
                await self.dialogue.reset(CHANNEL, self.user)
                self._write("bot> " + text("reset", self.locale))
            case "/forget":
                await self.dialogue.forget(CHANNEL, self.user)
                self._write("bot> " + text("forgotten", self.locale))
            case "/persona":
                await self._persona(argument.strip())
            case _:
                result = await self.dialogue.handle(Incoming(CHANNEL, self.user, line, locale=self.locale))
                if result.reply:
                    self._write("bot> " + result.reply)
        return True

    async def _persona(self, argument: str) -> None:
        if not argument:
            for persona in builtin_personas():
                self._write(f"  {persona.key:10} {persona.name}: {persona.description}")
            return
        if argument.startswith("my:"):
            lines = [line.strip() for line in argument[3:].split(";") if line.strip()]
            words = Incoming(CHANNEL, self.user, "\n".join(lines), locale=self.locale)
            if not lines:
                self._write("(no lines given: /persona my: LINE; LINE)")
            elif (result := await self.dialogue.answered_if_at_risk(words)) is not None:
                self._write(f"bot> {result.reply}")
            else:
                await self.dialogue.set_persona(CHANNEL, self.user, lines=lines)
                self._write("(persona set to your own lines)")
        elif await self.dialogue.set_persona(CHANNEL, self.user, key=argument):
            self._write(f"(persona: {argument})")
        else:
            self._write(f"(no persona called {argument!r}; /persona lists them)")
