"""Every reader on its bundled sample file, and on broken files (an error naming file:line, or skip and count)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.api import ChatMessage
from inference.prompt import split_messages
from training.readers import DataFormatError, Malformed, detect_format, read_dialogues

FORMATS = Path(__file__).resolve().parents[1] / "training" / "data" / "formats"
BUNDLED = {
    "empathetic_dialogues.csv": "empathetic_dialogues",
    "blended_skill_talk.json": "blended_skill_talk",
    "convai2.txt": "convai2",
    "parlai.txt": "parlai",
    "dialogues.jsonl": "jsonl",
    "telegram/result.json": "telegram",
}


def read(path: Path, fmt: str = "auto", skip: bool = False, **kw):
    malformed = Malformed(skip=skip)
    return list(read_dialogues(path, fmt, malformed, **kw)), malformed.skipped


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file_reads_and_detects(name: str) -> None:
    path = FORMATS / name
    assert detect_format(path) == BUNDLED[name]
    dialogues, skipped = read(path)
    assert dialogues and skipped == 0
    for d in dialogues:
        assert d.turns[0].content and all(t.content.strip() for t in d.turns)
        assert any(t.role == "assistant" for t in d.turns[1:])
        assert d.origin.startswith(str(path))


@pytest.mark.parametrize("name", BUNDLED)
def test_byte_order_mark_is_not_text(tmp_path: Path, name: str) -> None:
    path = tmp_path / Path(name).name
    path.write_bytes(b"\xef\xbb\xbf" + (FORMATS / name).read_bytes())
    assert detect_format(path) == BUNDLED[name]
    dialogues, skipped = read(path)
    assert skipped == 0
    assert [(d.persona, d.turns) for d in dialogues] == [(d.persona, d.turns) for d in read(FORMATS / name)[0]]


def test_empathetic_dialogues_unescapes_and_assigns_roles() -> None:
    dialogues, _ = read(FORMATS / "empathetic_dialogues.csv")
    first = dialogues[0]
    assert [t.role for t in first.turns] == ["user", "assistant", "user", "assistant"]
    assert first.turns[1].content.startswith("That sounds exhausting, and frightening.")
    assert len(dialogues) == 3 and dialogues[2].turns[-1].role == "assistant"


def test_bst_reads_both_shapes_with_learner_persona() -> None:
    original, flat = read(FORMATS / "blended_skill_talk.json")[0]
    assert original.persona == ("I volunteer on a support line.", "I like long walks by the river.")
    assert original.turns[0].content.startswith("Our school was closed")  # seed utterance
    assert flat.persona == ("I am a good listener.", "I drink a lot of mint tea.")
    assert [t.role for t in flat.turns] == ["user", "assistant"] * 3


def test_convai2_keeps_own_persona_only() -> None:
    first, second = read(FORMATS / "convai2.txt")[0]
    assert first.persona == ("i volunteer as a listener in the evenings.", "i love the smell of rain.")
    assert second.persona == ("i keep a small garden.",)
    assert first.turns[1].content == "that sounds tiring. how are you feeling now that you are home?"


def test_parlai_persona_from_text_and_first_label() -> None:
    first, second = read(FORMATS / "parlai.txt")[0]
    assert first.persona == ("i am calm and patient.", "i like to read in the evening.")
    assert first.turns[0].content == "I cannot stop checking the news about my hometown."
    assert second.turns[1].content == "Oh no, that is disappointing. How many more tries do you get?"
    assert second.persona == ()


def test_jsonl_source_persona_applies_only_when_record_has_none(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"turns": ["hi", "hello, how are you?"]}) + "\n", encoding="utf-8")
    (d,), _ = read(path, persona=("I am kind.",))
    assert d.persona == ("I am kind.",)
    bundled, _ = read(FORMATS / "dialogues.jsonl", persona=("ignored",))
    assert bundled[0].persona[0] == "I am a calm volunteer listener."


def test_persona_lines_are_normalised_as_serving_normalises_system_messages(tmp_path: Path) -> None:
    raw = ["  I am kind.\nI listen first. ", "", "   "]
    served, _ = split_messages([ChatMessage("system", line) for line in raw])
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps({"persona": raw, "turns": ["hi", "hello"]}) + "\n" + json.dumps({"turns": ["hi", "hey"]}) + "\n",
        encoding="utf-8",
    )
    (own, source), _ = read(path, persona=tuple(raw))
    assert list(own.persona) == list(source.persona) == served == ["I am kind.", "I listen first."]
    path.write_text(json.dumps({"persona": [" ", ""], "turns": ["hi", "hello"]}) + "\n", encoding="utf-8")
    (blank,), _ = read(path, persona=("I am kind.",))
    assert blank.persona == ("I am kind.",)  # a record's blank persona is no persona


BROKEN = [
    (
        "ed.csv",
        "empathetic_dialogues",
        "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
        "c1,1,sad,p,1,hello there,5|5,\n"
        "c1,2,sad,p,2,a reply, with, bare commas,5|5,\n",
        3,
        "8 or 9",
    ),
    ("ed2.csv", "empathetic_dialogues", "c1,x,sad,p,1,hello,5|5,\n", 1, "utterance_idx"),
    (
        "bst.json",
        "blended_skill_talk",
        '[\n {"personas": [["a"], ["b"]], "dialog": [[0, "hi"], [1, "yo"]]},\n {"dialog": []}\n]',
        3,
        "personas",
    ),
    (
        "bst2.json",
        "blended_skill_talk",
        '[\n {"personas": [["a"], ["b"]],\n  "dialog": [[0, "hi"] [1, "yo"]]}\n]',
        3,
        "invalid JSON",
    ),
    ("c.txt", "convai2", "1 your persona: i am kind.\n2 hello\tworld\nthree oops\n", 3, "turn number"),
    ("c2.txt", "convai2", "1 your persona: i am kind.\n2 hello there with no reply\n", 2, "TAB"),
    ("p.txt", "parlai", "text:hi\tlabels:hello\nnot a field\tlabels:x\n", 2, "key:"),
    ("p2.txt", "parlai", "text:hi\tlabels:hello\ntext:only text\tepisode_done:True\n", 2, "labels:"),
    ("d.jsonl", "jsonl", '{"turns": ["a", "b"]}\n{"turns": ["a", 5]}\n', 2, "turn 1"),
    ("d2.jsonl", "jsonl", '{"turns": ["a", "b"]}\n\n{"turns": ["a", "b"\n', 3, "invalid JSON"),
    ("bad.jsonl", "jsonl", b'{"turns": ["a", "b"]}\n{"turns": ["\xff\xfe", "b"]}\n', 2, "UTF-8"),
]


@pytest.mark.parametrize(("name", "fmt", "text", "line", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_names_file_and_line(
    tmp_path: Path, name: str, fmt: str, text: str | bytes, line: int, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataFormatError) as info:
        read(path, fmt)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "case", [b for b in BROKEN if "invalid JSON" not in b[4] or b[1] == "jsonl"], ids=lambda b: b[0]
)
def test_skip_flag_counts_and_keeps_the_rest(tmp_path: Path, case: tuple) -> None:
    name, fmt, text, _, _ = case
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    if isinstance(text, bytes):  # undecodable bytes stop the stream: a line-based reader cannot resync safely
        with pytest.raises(DataFormatError):
            read(path, fmt, skip=True)
        return
    _, skipped = read(path, fmt, skip=True)
    assert skipped == 1


def test_error_never_quotes_message_text(tmp_path: Path) -> None:
    path = tmp_path / "private.csv"
    path.write_text("c1,1,sad,p,1,my secret phone 555 1234, and, more,5|5,\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read(path, "empathetic_dialogues")
    assert "555" not in str(info.value) and "secret" not in str(info.value)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "nope.jsonl")
    odd = tmp_path / "odd.txt"
    odd.write_text("hello\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="cannot tell the format"):
        read(odd)
