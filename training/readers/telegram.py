"""Telegram Desktop chat export (`result.json`, "Export chat history" in JSON) cleaned for fine-tuning.

Rules a person training on their own chats needs:
- service messages (joins, pins, calls), forwarded messages and messages sent via inline bots are dropped,
  and so is everything from bots (a display name whose last word is "bot": "Weather Bot", "news_bot",
  "WeatherBot"; not "Talbot" or "Abbot", people's names) and from `drop_senders`;
- media without a caption (stickers, photos, voice notes) carries no text and is dropped;
- consecutive messages of one sender are merged into one turn (joined with newlines);
- a pause longer than `gap` (default 30 minutes) starts a new conversation, so the model never learns to
  answer a message from days before. A reply after such a pause opens a conversation and is not learned,
  so the gap is fixed rather than "median" (the chat's median reply time, which split off half the replies);
  `GapSplits` counts what the gap costs, for the data plan;
- `me` picks the participant the model learns to be (a name or a from_id such as "user123"); in a
  one-to-one chat it defaults to the exporter, i.e. the participant who is not the chat's peer.
The file is read twice, streaming, when the median gap or the default participant must be found first.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from inference.api import ChatMessage
from training.readers.base import DataFormatError, Dialogue, Malformed, dialogue
from training.readers.jsonstream import iter_json_array

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BOT_WORD = re.compile(r"(?:^|[\s_.-])bot$", re.IGNORECASE)  # "Weather Bot", "news_bot", "BOT"
_BOT_CAMEL = re.compile(r"[a-z0-9]Bot$")  # "WeatherBot", but not "Talbot"


@dataclass(frozen=True, slots=True)
class TelegramOptions:
    me: str | None = None
    gap: str | float = "30m"
    drop_senders: tuple[str, ...] = ()


@dataclass
class GapSplits:
    """Replies of `me` (a turn after someone else's), and how many of them a pause over the gap split
    off as a conversation's opener, where no example learns them."""

    gap: float | None = None  # seconds, once the reader has chosen it
    replies: int = 0
    split_off: int = 0


@dataclass(frozen=True, slots=True)
class _Message:
    line: int
    time: float
    sender: str  # from_id
    name: str
    text: str


def parse_gap(gap: str | float) -> float | None:
    """Seconds for "90", 90, "45m", "6h", "2d"; None for "median"."""
    if isinstance(gap, int | float):
        return float(gap)
    if gap == "median":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", gap)
    if not match:
        raise ValueError(f"telegram gap must be 'median' or a duration like 90, 45m, 6h, 2d; got {gap!r}")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _is_bot(name: str) -> bool:
    """The export does not mark bots: a display name whose last word is "bot", set apart or capitalised,
    is one; a person's name that merely ends in those letters (Talbot, Abbot) is not."""
    return bool(_BOT_WORD.search(name) or _BOT_CAMEL.search(name))


def _text(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in raw]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
    return None


def _time(record: dict[str, Any]) -> float | None:
    try:
        if "date_unixtime" in record:
            return float(record["date_unixtime"])
        return datetime.fromisoformat(record["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _messages(path: Path, malformed: Malformed, options: TelegramOptions, header: dict[str, Any]) -> Iterator[_Message]:
    """Kept messages in order, after the drop rules; top-level chat fields land in `header`."""
    dropped = {s.casefold() for s in options.drop_senders}
    for key, line, record in iter_json_array(path, key="messages"):
        if key != "messages":
            header[key] = record
            continue
        if not isinstance(record, dict) or "type" not in record:
            malformed(DataFormatError(path, line, 'message must be an object with a "type"'))
            continue
        if record["type"] != "message" or "forwarded_from" in record or "via_bot" in record:
            continue
        sender, name = record.get("from_id"), record.get("from") or ""
        text, when = _text(record.get("text", "")), _time(record)
        if not isinstance(sender, str) or not isinstance(name, str) or text is None or when is None:
            malformed(
                DataFormatError(
                    path,
                    line,
                    'message needs "from_id", a "date" or "date_unixtime", '
                    'and "text" as a string or a list of strings and {"text": ...} parts',
                )
            )
            continue
        if _is_bot(name) or sender.casefold() in dropped or name.casefold() in dropped:
            continue
        if text.strip():
            yield _Message(line, when, sender, name, text.strip())


def _survey(
    path: Path, malformed: Malformed, options: TelegramOptions
) -> tuple[dict[str, Any], Counter[tuple[str, str]], list[float]]:
    """First pass: chat header, message count per (from_id, name), and the reply gaps. A malformed
    record stops it (unless skipping, which the second pass reports)."""
    header: dict[str, Any] = {}
    counts: Counter[tuple[str, str]] = Counter()
    gaps: list[float] = []
    previous: _Message | None = None
    for message in _messages(path, Malformed(skip=True, quiet=True) if malformed.skip else malformed, options, header):
        counts[(message.sender, message.name)] += 1
        if previous and previous.sender != message.sender:
            gaps.append(max(0.0, message.time - previous.time))
        previous = message
    if "chats" in header:
        raise DataFormatError(
            path, 1, "this is a whole-account export; export a single chat (result.json with 'messages')"
        )
    return header, counts, gaps


def _choose_me(path: Path, options: TelegramOptions, header: dict[str, Any], counts: Counter[tuple[str, str]]) -> str:
    if options.me is not None:
        for sender, name in counts:
            if options.me in (sender, name):
                return sender
        raise DataFormatError(path, 1, f"telegram.me={options.me!r} wrote no kept message in this chat")
    peer = f"user{header.get('id')}"
    others = [sender for sender, _ in counts if sender != peer]
    if header.get("type") == "personal_chat" and len(others) == 1:
        return others[0]
    listing = ", ".join(f"{name or sender!r} ({n} messages)" for (sender, name), n in counts.most_common())
    raise DataFormatError(path, 1, f"choose who the model learns to be with telegram.me = one of: {listing}")


def read_telegram(
    path: Path,
    malformed: Malformed,
    persona: tuple[str, ...] = (),
    options: TelegramOptions = TelegramOptions(),
    splits: GapSplits | None = None,
) -> Iterator[Dialogue]:
    """Stream cleaned conversations from one chat export; `splits` counts the replies the gap costs."""
    splits = splits or GapSplits()
    gap = parse_gap(options.gap)
    header, counts, gaps = _survey(path, malformed, options)
    me = _choose_me(path, options, header, counts)
    if gap is None:
        gap = statistics.median(gaps) if gaps else float("inf")
    splits.gap = gap
    turns: list[ChatMessage] = []
    speakers: list[str] = []
    start, last_time = 0, float("-inf")
    for message in _messages(path, malformed, options, {}):
        reply = message.sender == me and bool(speakers) and speakers[-1] != me
        splits.replies += reply
        if message.time - last_time > gap and turns:
            splits.split_off += reply
            if d := dialogue(persona, turns, f"{path}:{start}"):
                yield d
            turns, speakers = [], []
        if not turns:
            start = message.line
        last_time = message.time
        if speakers and speakers[-1] == message.sender:
            turns[-1] = ChatMessage(turns[-1].role, f"{turns[-1].content}\n{message.text}")
            continue
        speakers.append(message.sender)
        turns.append(ChatMessage("assistant" if message.sender == me else "user", message.text))
    if turns and (d := dialogue(persona, turns, f"{path}:{start}")):
        yield d
