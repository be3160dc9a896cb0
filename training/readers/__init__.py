"""Dialogue readers: every supported format streams `Dialogue`s from a local file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from training.readers.base import DataFormatError, Dialogue, Malformed
from training.readers.bst import read_blended_skill_talk
from training.readers.convai2 import read_convai2
from training.readers.empathetic import read_empathetic_dialogues
from training.readers.jsonl import read_jsonl
from training.readers.parlai import read_parlai
from training.readers.telegram import GapSplits, TelegramOptions, read_telegram

Format = Literal["auto", "empathetic_dialogues", "blended_skill_talk", "convai2", "parlai", "jsonl", "telegram"]

__all__ = [
    "DataFormatError",
    "Dialogue",
    "Format",
    "GapSplits",
    "Malformed",
    "TelegramOptions",
    "detect_format",
    "read_dialogues",
]


def detect_format(path: Path) -> Format:
    """Guess the format from the name and first line, for `format: auto`."""
    if path.suffix == ".csv":
        return "empathetic_dialogues"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".json":
        return "telegram" if path.name == "result.json" else "blended_skill_talk"
    with path.open("rb") as f:
        first = f.readline().decode("utf-8-sig", "replace")
    if first.startswith("text:") or "\ttext:" in first:
        return "parlai"
    if first.split(" ", 1)[0].isdigit():
        return "convai2"
    raise DataFormatError(
        path,
        1,
        "cannot tell the format; set format: to one of "
        "empathetic_dialogues, blended_skill_talk, convai2, parlai, jsonl, telegram",
    )


def read_dialogues(
    path: Path,
    fmt: Format,
    malformed: Malformed,
    persona: tuple[str, ...] = (),
    telegram: TelegramOptions | None = None,
    splits: GapSplits | None = None,
) -> Iterator[Dialogue]:
    """Stream dialogues of one source; `persona` applies where the format carries none of its own;
    `splits` counts the Telegram replies that a pause split off."""
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    match detect_format(path) if fmt == "auto" else fmt:
        case "empathetic_dialogues":
            return read_empathetic_dialogues(path, malformed, persona)
        case "blended_skill_talk":
            return read_blended_skill_talk(path, malformed)
        case "convai2":
            return read_convai2(path, malformed)
        case "parlai":
            return read_parlai(path, malformed, persona)
        case "jsonl":
            return read_jsonl(path, malformed, persona)
        case "telegram":
            return read_telegram(path, malformed, persona, telegram or TelegramOptions(), splits)
    raise ValueError(f"unknown data format {fmt!r}")
