"""ConvAI2 / PersonaChat text: numbered lines, `your persona:` lines, then `partner<TAB>reply[<TAB><TAB>candidates]`.

A line numbered 1 starts a new episode. The model learns to be the side whose persona is "your persona";
the partner's persona lines (in the "both" variants) are not the model's and are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from inference.api import ChatMessage
from training.readers.base import DataFormatError, Dialogue, Malformed, dialogue, numbered_lines

_SILENCE = "__SILENCE__"


def read_convai2(path: Path, malformed: Malformed) -> Iterator[Dialogue]:
    """Stream episodes as dialogues with the episode's own persona."""
    persona: list[str] = []
    turns: list[ChatMessage] = []
    start = 0
    last = 0
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        head, _, rest = line.partition(" ")
        if not head.isdigit():
            malformed(DataFormatError(path, number, "line does not start with a turn number"))
            continue
        n = int(head)
        if n == 1:
            if turns and (d := dialogue(persona, turns, f"{path}:{start}")):
                yield d
            persona, turns, start = [], [], number
        elif n != last + 1:
            malformed(DataFormatError(path, number, f"turn number {n} does not follow {last}"))
            continue
        last = n
        if rest.startswith("your persona:"):
            persona.append(rest.removeprefix("your persona:").strip())
            continue
        if rest.startswith("partner's persona:"):
            continue
        parts = rest.split("\t")
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            malformed(DataFormatError(path, number, "expected 'partner text<TAB>reply'"))
            continue
        if parts[0].strip() != _SILENCE:
            turns.append(ChatMessage("user", parts[0].strip()))
        turns.append(ChatMessage("assistant", parts[1].strip()))
    if turns and (d := dialogue(persona, turns, f"{path}:{start}")):
        yield d
