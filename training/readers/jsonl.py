"""Simple JSONL: one conversation per line, `{"persona": [...], "turns": [...]}`.

Turns are either strings that alternate user, assistant, user, ... (the user speaks first), or
objects `{"role": "user"|"assistant", "content": "..."}`. This is the format of the bundled data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inference.api import ChatMessage
from inference.prompt import persona_lines
from training.readers.base import DataFormatError, Dialogue, Malformed, dialogue, numbered_lines


def _turn(i: int, raw: Any) -> ChatMessage | str:
    """A ChatMessage, or the reason this turn is malformed."""
    if isinstance(raw, str):
        role = "user" if i % 2 == 0 else "assistant"
        content = raw
    elif isinstance(raw, dict) and raw.get("role") in ("user", "assistant") and isinstance(raw.get("content"), str):
        role, content = raw["role"], raw["content"]
    else:
        return f"turn {i} must be a string or {{role: user|assistant, content: string}}"
    if not content.strip():
        return f"turn {i} is empty"
    return ChatMessage(role, content.strip())


def read_jsonl(path: Path, malformed: Malformed, persona: tuple[str, ...] = ()) -> Iterator[Dialogue]:
    """Stream one dialogue per line; a record's own persona wins over the source's."""
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            malformed(DataFormatError(path, number, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("turns"), list):
            malformed(DataFormatError(path, number, 'expected an object with a "turns" list'))
            continue
        own = record.get("persona", [])
        if not isinstance(own, list) or not all(isinstance(p, str) for p in own):
            malformed(DataFormatError(path, number, '"persona" must be a list of strings'))
            continue
        turns = [_turn(i, raw) for i, raw in enumerate(record["turns"])]
        if problem := next((t for t in turns if isinstance(t, str)), None):
            malformed(DataFormatError(path, number, problem))
            continue
        if d := dialogue(persona_lines(own) or persona, turns, f"{path}:{number}"):  # type: ignore[arg-type]
            yield d
