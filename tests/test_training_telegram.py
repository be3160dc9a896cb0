"""Telegram Desktop export cleaning rules, and the streaming JSON reader under them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.cli import main
from tests.training_fixtures import tiny_config_file
from training.readers import DataFormatError, GapSplits, Malformed, TelegramOptions, read_dialogues
from training.readers.jsonstream import iter_json_array
from training.readers.telegram import parse_gap

EXPORT = Path(__file__).resolve().parents[1] / "training" / "data" / "formats" / "telegram" / "result.json"


def chat(options: TelegramOptions | None = None, path: Path = EXPORT, persona: tuple[str, ...] = ()):
    return list(read_dialogues(path, "telegram", Malformed(), persona, options or TelegramOptions()))


def test_default_rules_on_bundled_export() -> None:
    evening, morning = chat()
    assert [t.role for t in morning.turns] == ["user", "assistant"]  # answered 2 minutes later
    assert chat(TelegramOptions(gap="median")) == [evening]  # the chat's median reply gap (60 s) splits it off
    assert [t.role for t in evening.turns] == ["user", "assistant", "user", "assistant"]
    # consecutive messages merged; the entity list flattened; service, forwarded and sticker messages gone
    assert evening.turns[0].content == "are you awake?\nthe explosions were very close tonight"
    assert evening.turns[2].content == "yes, we are both here"
    assert all("Air raid" not in t.content for t in evening.turns)


def test_longer_gap_keeps_morning_and_drops_bots() -> None:
    evening, morning = chat(TelegramOptions(gap="1h"), persona=("I am Marko.",))
    assert morning.persona == ("I am Marko.",)
    assert [t.content for t in morning.turns] == [
        "good morning, we are all fine",  # the weather bot and the via-bot gif in between are dropped
        "What a relief. Did you manage to sleep a little?\nI can call you at lunch if you like.",
    ]


def test_choose_the_other_participant() -> None:
    dialogues = chat(TelegramOptions(me="Olena", gap="1d"))
    assert dialogues[0].turns[0].role == "assistant" and dialogues[0].turns[1].role == "user"
    assert chat(TelegramOptions(me="user5550001", gap="1d"))[0].turns == dialogues[0].turns


def _group(tmp_path: Path, messages: list[dict]) -> Path:
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps({"name": "Friends", "type": "private_group", "id": 9, "messages": messages}), encoding="utf-8"
    )
    return path


def _msg(i: int, who: str, text: str, t: int) -> dict:
    return {"id": i, "type": "message", "date_unixtime": str(t), "from": who, "from_id": f"user{who}", "text": text}


def test_group_needs_me_and_lists_participants(tmp_path: Path) -> None:
    path = _group(
        tmp_path, [_msg(1, "Ann", "hi all", 0), _msg(2, "Bo", "hey Ann", 10), _msg(3, "Ann", "how are you", 20)]
    )
    with pytest.raises(DataFormatError, match=r"telegram.me.*'Ann' \(2 messages\).*'Bo' \(1 messages\)"):
        chat(path=path)
    with pytest.raises(DataFormatError, match="wrote no kept message"):
        chat(TelegramOptions(me="Zed"), path=path)
    (d,) = chat(TelegramOptions(me="Bo", gap=600), path=path)
    assert [t.role for t in d.turns] == ["user", "assistant", "user"]


def test_drop_senders_and_bot_names(tmp_path: Path) -> None:
    path = _group(
        tmp_path,
        [
            _msg(1, "Ann", "hi", 0),
            _msg(2, "Spammer", "buy now", 5),
            _msg(3, "HelperBot", "beep", 6),
            _msg(4, "Bo", "hello Ann", 10),
            _msg(5, "Alarm Bot", "beep", 11),
            _msg(6, "news_bot", "beep", 12),
            _msg(7, "Ann Talbot", "hi Bo", 13),
        ],
    )
    (d,) = chat(TelegramOptions(me="Bo", gap="1h", drop_senders=("Spammer",)), path=path)
    assert [t.content for t in d.turns] == ["hi", "hello Ann", "hi Bo"]  # a person named Talbot is no bot


def test_malformed_message_names_line(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(
        '{"name": "X", "type": "personal_chat", "id": 1,\n "messages": [\n'
        '  {"id": 1, "type": "message", "date_unixtime": "0", "from": "X", "from_id": "user1", "text": "hi"},\n'
        '  {"id": 2, "type": "message", "from": "Me", "from_id": "user2", "text": "no date"},\n'
        '  {"id": 3, "type": "message", "date_unixtime": "9", "from": "Me", "from_id": "user2", "text": "hello"}\n]}',
        encoding="utf-8",
    )
    with pytest.raises(DataFormatError, match=rf"^{path}:4: message needs"):
        chat(TelegramOptions(me="Me"), path=path)
    skipping = Malformed(skip=True)
    (d,) = read_dialogues(path, "telegram", skipping, (), TelegramOptions(me="Me"))
    assert skipping.skipped == 1 and [t.content for t in d.turns] == ["hi", "hello"]


def test_whole_account_export_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"about": "x", "chats": {"list": []}}), encoding="utf-8")
    with pytest.raises(DataFormatError, match="single chat"):
        chat(path=path)


def test_parse_gap() -> None:
    assert parse_gap("median") is None
    assert parse_gap("90") == 90 and parse_gap("45m") == 2700 and parse_gap("6h") == 21600 and parse_gap(2.5) == 2.5
    with pytest.raises(ValueError, match="duration"):
        parse_gap("soon")


@pytest.mark.parametrize("chunk", [1, 3, 17, 1 << 16])
def test_json_stream_is_chunk_independent(tmp_path: Path, chunk: int) -> None:
    doc = {
        "name": "n",
        "id": 1234567,
        "messages": [{"id": i, "text": "é" * i, "n": 10**i} for i in range(6)],
        "tail": [1, 2],
    }
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    got = list(iter_json_array(path, key="messages", chunk_size=chunk))
    assert [v for k, _, v in got if k == "messages"] == doc["messages"]
    assert dict((k, v) for k, _, v in got if k != "messages") == {"name": "n", "id": 1234567, "tail": [1, 2]}
    lines = path.read_text(encoding="utf-8").splitlines()
    for key, line, _ in got:
        if key == "messages":
            assert lines[line - 1].strip() == "{"  # line numbers point at where each item starts


def _evenings(tmp_path: Path, days: int = 10, per_day: int = 20) -> Path:
    """A one-to-one chat of `days` evenings; the exporter ("Me") answers Ann within 10-160 s."""
    messages = []
    for day in range(days):
        t = day * 86400
        for i in range(per_day):
            t += 10 + (i * 37 + day * 11) % 151
            messages.append(_msg(len(messages), "Ann" if i % 2 == 0 else "Me", f"evening {day} line {i}", t))
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps({"name": "Ann", "type": "personal_chat", "id": "Ann", "messages": messages}), encoding="utf-8"
    )
    return path


def test_default_gap_keeps_quick_replies_and_counts_what_a_gap_splits_off(tmp_path: Path) -> None:
    path = _evenings(tmp_path, days=1, per_day=200)
    splits = GapSplits()
    dialogues = list(read_dialogues(path, "telegram", Malformed(), (), TelegramOptions(), splits))
    learned = sum(t.role == "assistant" for d in dialogues for t in d.turns[1:])
    assert (learned, splits.replies, splits.split_off) == (100, 100, 0)
    median = GapSplits()
    dialogues = list(read_dialogues(path, "telegram", Malformed(), (), TelegramOptions(gap="median"), median))
    learned = sum(t.role == "assistant" for d in dialogues for t in d.turns[1:])
    assert median.replies == 100 and median.split_off > 30 and learned == 100 - median.split_off


def test_plan_reports_replies_split_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_config_file(tmp_path, data={"sources": [{"path": str(_evenings(tmp_path)), "format": "telegram"}]})
    assert main(["train", "--config", str(path), "--dry-run", "data.sources.0.telegram.gap=60"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"result.json \(telegram\): \d+ dialogues, 0 malformed skipped, [1-9]\d of 100 replies open", out)
