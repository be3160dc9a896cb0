"""Blended Skill Talk JSON: a list of episodes with two personas and the dialogue.

Accepts the original file shape (`dialog: [[speaker, text], ...]` after the two seed utterances
`free_turker_utterance` / `guided_turker_utterance`) and the flattened shape (`previous_utterance`,
`free_messages`, `guided_messages`). The model learns to be the guided speaker (speaker 1), whose
persona is `personas[1]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inference.api import ChatMessage
from training.readers.base import DataFormatError, Dialogue, Malformed, dialogue
from training.readers.jsonstream import iter_json_array

_LEARNER = 1


def _persona(raw: Any) -> list[str] | None:
    if isinstance(raw, str):
        return [line.strip() for line in raw.split("\n") if line.strip()]
    if isinstance(raw, list) and all(isinstance(p, str) for p in raw):
        return [p.strip() for p in raw if p.strip()]
    return None


def _spoken(record: dict[str, Any]) -> list[tuple[int, str]] | None:
    """(speaker, text) pairs in order, or None when the record has neither known shape."""
    if isinstance(record.get("dialog"), list):
        seeds = [(0, record.get("free_turker_utterance")), (1, record.get("guided_turker_utterance"))]
        pairs = [tuple(p) if isinstance(p, list) and len(p) == 2 else None for p in record["dialog"]]
        spoken = [(s, t) for s, t in seeds if isinstance(t, str) and t.strip()] + pairs  # type: ignore[operator]
    elif isinstance(record.get("free_messages"), list) and isinstance(record.get("guided_messages"), list):
        seeds = record.get("previous_utterance") or []
        spoken = [(i % 2, t) for i, t in enumerate(seeds)]
        for free, guided in zip(record["free_messages"], record["guided_messages"], strict=False):
            spoken += [(0, free), (1, guided)]
    else:
        return None
    if not all(p and p[0] in (0, 1) and isinstance(p[1], str) and p[1].strip() for p in spoken):
        return None
    return [(int(s), t.strip()) for s, t in spoken]


def read_blended_skill_talk(path: Path, malformed: Malformed) -> Iterator[Dialogue]:
    """Stream episodes from the JSON array without loading the whole file."""
    for _, line, record in iter_json_array(path):
        personas = record.get("personas") if isinstance(record, dict) else None
        persona = _persona(personas[_LEARNER]) if isinstance(personas, list) and len(personas) == 2 else None
        if persona is None:
            malformed(DataFormatError(path, line, 'episode needs "personas": two lists of strings'))
            continue
        spoken = _spoken(record)
        if spoken is None:
            malformed(
                DataFormatError(
                    path,
                    line,
                    'episode needs "dialog" [[speaker 0|1, text], ...] '
                    'or "free_messages" and "guided_messages" lists of non-empty strings',
                )
            )
            continue
        turns = [ChatMessage("assistant" if s == _LEARNER else "user", t) for s, t in spoken]
        if d := dialogue(persona, turns, f"{path}:{line}"):
            yield d
