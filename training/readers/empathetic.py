"""EmpatheticDialogues CSV: conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags.

The file is not quoted CSV: fields are split on bare commas and commas inside text are written
`_comma_` (a 9th field of `|`-separated candidates, with `_pipe_`, appears in some splits). The
speaker who opens a conversation is the user; the other speaker is the listener the model learns to be.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from inference.api import ChatMessage
from training.readers.base import DataFormatError, Dialogue, Malformed, dialogue, numbered_lines


def _unescape(text: str) -> str:
    return text.replace("_comma_", ",").replace("_pipe_", "|").strip()


def read_empathetic_dialogues(path: Path, malformed: Malformed, persona: tuple[str, ...] = ()) -> Iterator[Dialogue]:
    """Stream conversations; each listener turn becomes something the model learns to say."""
    conv_id: str | None = None
    opener = ""
    turns: list[ChatMessage] = []
    start = 0
    last_idx = 0
    for number, line in numbered_lines(path):
        if not line.strip() or (number == 1 and line.startswith("conv_id,")):
            continue
        fields = line.split(",")
        if len(fields) not in (8, 9):
            malformed(
                DataFormatError(
                    path,
                    number,
                    f"expected 8 or 9 comma-separated fields, found {len(fields)} "
                    "(commas inside text must be written _comma_)",
                )
            )
            continue
        cid, idx_text, _emotion, _situation, speaker, utterance = fields[:6]
        if not idx_text.isdigit() or not speaker.strip():
            malformed(DataFormatError(path, number, "utterance_idx must be a number and speaker_idx non-empty"))
            continue
        text = _unescape(utterance)
        if not text:
            malformed(DataFormatError(path, number, "empty utterance"))
            continue
        idx = int(idx_text)
        if cid != conv_id:
            if turns and (d := dialogue(persona, turns, f"{path}:{start}")):
                yield d
            conv_id, opener, turns, start, last_idx = cid, speaker, [], number, 0
        if idx <= last_idx:
            malformed(DataFormatError(path, number, f"utterance_idx {idx} repeats or goes back (previous {last_idx})"))
            continue
        last_idx = idx
        turns.append(ChatMessage("user" if speaker == opener else "assistant", text))
    if turns and (d := dialogue(persona, turns, f"{path}:{start}")):
        yield d
