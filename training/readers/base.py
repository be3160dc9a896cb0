"""What every reader yields, and how a malformed record is handled (stop with file:line, or skip and count)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from inference.api import ChatMessage
from inference.prompt import persona_lines

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Dialogue:
    """One conversation: the persona of the side the model learns to be, and the turns in order.

    Turns with role "assistant" are the ones the model learns to say; "user" turns are context.
    """

    persona: tuple[str, ...]
    turns: tuple[ChatMessage, ...]
    origin: str  # "file:line" where the conversation starts, for error messages and the data report


class DataFormatError(ValueError):
    """A record that does not follow its format; the message names file and line, never the text."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class Malformed:
    """Policy for malformed records: raise (the default, so nothing is silently lost) or skip and count."""

    def __init__(self, skip: bool = False, quiet: bool = False) -> None:
        self.skip = skip
        self.quiet = quiet  # for a survey pass whose records are reported by the pass after it
        self.skipped = 0

    def __call__(self, error: DataFormatError) -> None:
        if not self.skip:
            raise error
        self.skipped += 1
        if not self.quiet:
            log.warning("skipped malformed record: %s", error)


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Stream (line number, text) without the newline; a byte sequence that is not UTF-8 names its line.
    A byte order mark (Windows editors and Excel write one) is not part of the text."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(path, number, f"not UTF-8 ({exc.reason})") from None
            yield number, text.rstrip("\r\n")


def dialogue(persona: list[str] | tuple[str, ...], turns: list[ChatMessage], origin: str) -> Dialogue | None:
    """A Dialogue when it has something to learn (an assistant turn after some context), else None.
    The persona is normalised as serving normalises system messages, so the model sees the same lines."""
    if any(t.role == "assistant" for t in turns[1:]):
        return Dialogue(tuple(persona_lines(persona)), tuple(turns), origin)
    return None
