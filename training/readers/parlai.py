"""ParlAI text format: one message per line as TAB-separated `key:value` fields.

`text:` is what the partner said, `labels:` the reply to learn (the first of `|`-separated labels),
`episode_done:True` closes the episode. Values escape TAB and newline as `\\t`, `\\n` and `|` as `__PIPE__`.
Lines of `text` that begin with `your persona:` are the persona, as ParlAI's persona tasks write it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from inference.api import ChatMessage
from training.readers.base import DataFormatError, Dialogue, Malformed, dialogue, numbered_lines


def _fields(line: str) -> dict[str, str] | None:
    fields: dict[str, str] = {}
    for part in line.split("\t"):
        if not part:
            continue
        key, sep, value = part.partition(":")
        if not sep:
            return None
        fields[key] = value.replace("\\t", "\t").replace("\\n", "\n")
    return fields


def read_parlai(path: Path, malformed: Malformed, persona: tuple[str, ...] = ()) -> Iterator[Dialogue]:
    """Stream episodes; persona lines found in the text are used, else the source's persona."""
    own_persona: list[str] = []
    turns: list[ChatMessage] = []
    start = 0
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = _fields(line)
        if fields is None:
            malformed(DataFormatError(path, number, "a TAB-separated field lacks its 'key:' prefix"))
            continue
        labels = fields.get("labels", fields.get("eval_labels"))
        if "text" not in fields or not labels:
            malformed(DataFormatError(path, number, "a message needs both text: and labels: fields"))
            continue
        if not turns:
            start = number
        said: list[str] = []
        for text_line in fields["text"].split("\n"):
            if text_line.startswith("your persona:"):
                own_persona.append(text_line.removeprefix("your persona:").strip())
            elif text_line.strip():
                said.append(text_line.strip())
        if said and said != ["__SILENCE__"]:
            turns.append(ChatMessage("user", "\n".join(said)))
        turns.append(ChatMessage("assistant", labels.split("|")[0].replace("__PIPE__", "|").strip()))
        if fields.get("episode_done", "").lower() == "true":
            if d := dialogue(own_persona or persona, turns, f"{path}:{start}"):
                yield d
            own_persona, turns = [], []
    if turns and (d := dialogue(own_persona or persona, turns, f"{path}:{start}")):
        yield d
