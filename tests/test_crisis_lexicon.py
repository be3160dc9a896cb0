"""The pattern language and the lexicon loader: what matches, and how a bad file is reported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.crisis.detector import CrisisDetector
from bot.crisis.lexicon import DEFAULT_DIR, LexiconError, load_lexicon
from bot.crisis.normalize import tokenize
from bot.crisis.patterns import PatternError, PatternIndex, compile_pattern, marks

DEV = Path(__file__).with_name("data") / "crisis_dev.jsonl"
CLASSES = {"WANT": ["want", "wanna", "хочу"], "SELF": ["myself", "себе"]}


def spans(pattern: str, text: str) -> list[tuple[int, int]]:
    return [(m.start, m.end) for m in compile_pattern(pattern, CLASSES).finds(tokenize(text))]


def test_gaps_optional_words_classes_and_stems() -> None:
    assert spans("@WANT to? ~2 kill @SELF", "I want to kill myself") == [(1, 4)]
    assert spans("@WANT to? ~2 kill @SELF", "i wanna really kill myself") == [(1, 4)]
    assert spans("@WANT to? ~2 kill @SELF", "I want to go and then kill myself") == []  # three words between
    assert spans("помер*|вмер*", "хочу вмерти") == [(1, 1)]
    assert spans("помер*|вмер*", "khochu pomerty") == [(1, 1)]


def test_multi_word_alternatives_and_numbers() -> None:
    assert spans("no_one|nobody ~2 miss ~1 me", "no one would miss me") == [(0, 4)]
    assert spans("no_one|nobody ~2 miss ~1 me", "nobody will miss me") == [(0, 3)]
    assert spans("took ~1 <num:8-999> ~1 pills", "I took 30 pills") == [(1, 3)]
    assert spans("took ~1 <num:8-999> ~1 pills", "I took 2 pills") == []


def test_matches_never_cross_a_sentence_end() -> None:
    assert spans("want ~3 die", "I want. To die") == []
    assert spans("want ~3 die", "I want, to die") == [(1, 3)]


def test_the_index_only_returns_patterns_whose_first_word_occurs() -> None:
    patterns = [compile_pattern(p, CLASSES) for p in ["kill @SELF", "помер*", "<num:1-5> pills"]]
    index = PatternIndex(patterns)
    assert index.candidates(tokenize("I will kill myself")) == {0: [2]}
    assert index.candidates(tokenize("хочу померти")) == {1: [1]}
    assert index.candidates(tokenize("3 pills")) == {2: [0]}
    assert index.candidates(tokenize("hello there")) == {}


def could_match(pattern: str, text: str) -> bool:
    return compile_pattern(pattern, CLASSES).could_match(marks(tokenize(text)))


def test_a_pattern_is_skipped_only_when_a_required_word_is_missing() -> None:
    assert not could_match("@WANT to? ~2 kill @SELF", "I want to talk for a bit")
    assert could_match("@WANT to? ~2 kill @SELF", "I want to kill myself")
    assert could_match("@WANT to? ~2 kill @SELF", "want myself kill")  # words present, order wrong: finds decides
    assert could_match("want ~2 no_one|nobody", "I want no one")  # a phrase's first word counts
    assert could_match("помер*|вмер* ~2 сьогодні", "вмерти сьогодні")
    assert could_match("took ~1 <num:8-999> ~1 pills", "took 2 pills")  # any number may be one
    assert not could_match("took ~1 <num:8-999> ~1 pills", "took some pills")
    assert not could_match("want ~2 kill", "I want a killer whale")  # a whole word is not a stem
    assert could_match("want ~2 kill*", "I want a killer whale")


def test_skipping_never_changes_what_the_shipped_lexicon_finds() -> None:
    detector = CrisisDetector.load()
    texts = [json.loads(line)["text"] for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    patterns = [p for r in detector.lexicon.rules for p in r.patterns]
    patterns += [p for i in detector.lexicon.idioms for p in i.patterns]
    skipped = 0
    for text in texts:
        tokens = tokenize(text)
        message_marks = marks(tokens)
        for pattern in patterns:
            if not pattern.could_match(message_marks):
                skipped += 1
                assert not list(pattern.finds(tokens)), (pattern.source, text)
    assert skipped > len(texts) * len(patterns) // 2  # the check does skip most patterns


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("~2 die", "starts with a gap"),
        ("die ~2", "ends with a gap"),
        ("die? now?", "has no required word"),
        ("now? die", "starts with an optional word"),
        ("@NOPE die", "unknown word class @NOPE"),
        ("ab* die", "too short"),
        ("well-known die", "must be one word"),
        ("a||b", "empty alternative"),
    ],
)
def test_bad_patterns_say_what_is_wrong(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        compile_pattern(pattern, CLASSES)


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


RULE = """
version: "t-1"
rules:
  - id: t.rule
    level: crisis
    tags: [self]
    patterns: ["want ~2 die"]
"""


def test_a_small_valid_lexicon_loads_and_assesses(tmp_path: Path) -> None:
    detector = CrisisDetector.load(write(tmp_path, RULE, "ok.yaml"))
    assert detector.assess("I want to die").evidence[0].version == "t-1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [\n  - id: x\n", "cannot read lexicon"),
        ("- just a list", "must be a mapping of sections"),
        ("rules: []", "missing 'version'"),
        ('version: "1"\nsynonyms: {}', "unknown section"),
        (RULE.replace("level: crisis", "level: severe"), r"rules\[0\] \(t.rule\): unknown level 'severe'"),
        (RULE.replace("tags: [self]", "tags: [selff]"), r"t.rule\): 'selff' is not a valid Tag"),
        (RULE.replace("want ~2 die", "want ~2 @X"), r"t.rule\): unknown word class @X"),
        (RULE.replace("    level: crisis\n", "    level: crisis\n    unless: [jokes]\n"), "undefined context"),
        (RULE.replace("patterns:", "pattern:"), "unknown key"),
        (RULE.replace("  - id: t.rule\n", '  - id: t.rule\n    negatable: "no"\n'), "'negatable' must be true"),
        (RULE + "  - id: t.rule\n    level: none\n    patterns: [x]\n", "id 't.rule' already used"),
        (RULE + "combinations:\n  - id: c\n    level: crisis\n    all_of: [[nothing]]\n", "produced by no rule"),
        (RULE + "combinations:\n  - id: c\n    level: crisis\n", "needs 'all_of', or 'at_least'"),
        ('version: "1"\ncontexts:\n  a: {with: [b]}\n  b: {with: [a]}\n', "part of a cycle"),
    ],
)
def test_a_malformed_lexicon_names_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(LexiconError, match=message) as caught:
        CrisisDetector.load(path)
    assert str(path) in str(caught.value)


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match="no lexicon files"):
        load_lexicon(tmp_path)


def test_the_shipped_lexicon_is_versioned_per_file() -> None:
    lexicon = load_lexicon(DEFAULT_DIR)
    assert set(lexicon.versions) >= {"en.yaml", "uk.yaml", "ru.yaml", "pl.yaml", "negation.yaml"}
    assert all(v for v in lexicon.versions.values())
    prefixes = {rule.id.split(".")[0] for rule in lexicon.rules}
    languages = {"en", "uk", "ru", "pl"}
    assert prefixes == languages | {f"fields-{lang}" for lang in languages}


def test_shipped_versions_name_the_file_and_a_dated_revision() -> None:
    """`<file>-YYYY.MM.DD.N`: evidence then says which file and which revision of it fired."""
    versions = load_lexicon(DEFAULT_DIR).versions
    for name, version in versions.items():
        assert re.fullmatch(rf"{re.escape(name.removesuffix('.yaml'))}-\d{{4}}\.\d{{2}}\.\d{{2}}\.\d+", version), name
