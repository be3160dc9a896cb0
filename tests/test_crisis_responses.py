"""Safe replies: the right language and country, helplines, emergency first, no method words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.crisis.levels import Assessment, Level, Tag
from bot.crisis.normalize import tokenize
from bot.crisis.output_filter import check_reply
from bot.crisis.responses import DEFAULT_PATH, ResponseError, SafeResponder

LANGUAGES = ("en", "uk", "ru", "pl")
SEVERE = (Level.CONCERN, Level.CRISIS, Level.EMERGENCY)
TAG_SETS = ((), (Tag.ABUSE,), (Tag.THIRD_PARTY,), (Tag.HARM_TO_OTHERS,), (Tag.MILITARY_DANGER, Tag.MINOR))
# Stems of method and place words per language; a safe reply names none of them.
METHOD_STEMS = {
    lang: [t.form for t in tokenize(words)]
    for lang, words in {
        "en": "pill tablet rope noose hang jump bridge roof overdose knife gun blade razor wrist poison drown",
        "uk": "таблет пігул мотуз петл повіс стриб мост дах ніж лез отру вен",
        "ru": "таблет верев петл повес прыг мост крыш нож лезв отрав вен",
        "pl": "tablet sznur pętl powies skocz most dach nóż żylet trucizn żył",
    }.items()
}


@pytest.fixture(scope="module")
def responder() -> SafeResponder:
    return SafeResponder.load()


def reply(responder: SafeResponder, level: Level, tags=(), **where: str):
    return responder.reply(Assessment(level, frozenset(tags)), **where)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("level", SEVERE)
def test_every_severe_reply_lists_helplines_and_no_method_words(responder: SafeResponder, lang: str, level) -> None:
    for tags in TAG_SETS:
        message = reply(responder, level, tags, locale=lang, country="UA")
        assert message.language == lang
        assert message.helplines and all(h.number in message.text for h in message.helplines)
        assert "112" in message.text
        words = [t.form for t in tokenize(message.text)]
        assert not [w for w in words for stem in METHOD_STEMS[lang] if w.startswith(stem)], message.text
        assert check_reply(message.text).ok, message.text  # our own words pass our own filter


def test_emergency_gives_the_local_emergency_number_first(responder: SafeResponder) -> None:
    for phone, number in [("+48600100200", "112"), ("+447700900123", "999"), ("+14155550100", "911")]:
        message = reply(responder, Level.EMERGENCY, (), locale="en", phone=phone)
        assert message.text.splitlines()[0].startswith(f"Please call {number} now")


def test_concern_asks_directly_about_safety(responder: SafeResponder) -> None:
    assert "are you thinking about ending your life?" in reply(responder, Level.CONCERN, locale="en").text
    assert "ви думаєте про те, щоб покінчити з життям?" in reply(responder, Level.CONCERN, locale="uk-UA").text
    assert "вы думаете о том, чтобы покончить с жизнью?" in reply(responder, Level.CONCERN, locale="ru").text
    assert "czy myślisz o odebraniu sobie życia?" in reply(responder, Level.CONCERN, locale="pl").text
    assert "ending your life" not in reply(responder, Level.CRISIS, (Tag.THIRD_PARTY,), locale="en").text


def test_the_situation_line_follows_the_tags(responder: SafeResponder) -> None:
    assert "not your fault" in reply(responder, Level.CRISIS, (Tag.ABUSE, Tag.SELF), locale="en").text
    assert "call emergency services for them" in reply(responder, Level.CRISIS, (Tag.THIRD_PARTY,), locale="en").text
    assert "rescuers can hear you" in reply(responder, Level.EMERGENCY, (Tag.MILITARY_DANGER,), locale="en").text
    minor = reply(responder, Level.CRISIS, (Tag.ABUSE, Tag.MINOR), locale="uk", country="UA")
    assert minor.helplines[0].number == "116 111" and "не зробили нічого поганого" in minor.text


def test_country_and_language_come_from_the_user(responder: SafeResponder) -> None:
    message = reply(responder, Level.CRISIS, locale="uk-PL", phone="+48600100200")
    assert message.language == "uk" and message.resources.country == "PL"
    assert "800 70 2222" in message.text
    assert message.shown.startswith("PL: 112; ")
    fallback = reply(responder, Level.CRISIS, locale="de-DE")
    assert fallback.language == "en" and fallback.resources.country == "INT" and "findahelpline" in fallback.text


def test_below_concern_the_reply_is_a_short_reminder(responder: SafeResponder) -> None:
    message = responder.reply(Level.DISTRESS, locale="pl", country="PL")
    assert message.text.startswith("Jeśli będzie trudniej") and "112" in message.text
    assert len(message.helplines) == 1


def test_every_language_has_every_text() -> None:
    doc = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    assert set(doc["languages"]) == set(LANGUAGES)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["languages"].pop("en"), "at least 'en'"),
        (lambda d: d["languages"]["uk"].pop("closing"), r"languages.uk: missing text\(s\) \['closing'\]"),
        (lambda d: d["languages"]["pl"]["situation"].update(self=""), "situation.self: must be non-empty"),
        (lambda d: d["languages"]["en"].update(closing="Call {number}"), r"en.closing: unknown placeholder"),
        (lambda d: d["languages"]["en"].update(extra="x"), r"unknown key\(s\) \['extra'\]"),
    ],
)
def test_a_malformed_responses_file_names_the_text(tmp_path: Path, mutate, message: str) -> None:
    doc = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    mutate(doc)
    path = tmp_path / "responses.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ResponseError, match=message):
        SafeResponder.load(path)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_person_at_risk_themselves_reads_their_own_line_first(responder: SafeResponder, lang: str) -> None:
    texts = responder.texts[lang]
    both = reply(responder, Level.CRISIS, (Tag.SELF, Tag.THIRD_PARTY), locale=lang, country="UA").text
    assert texts["situation.self"] in both and texts["situation.third_party"] in both
    assert both.index(texts["situation.self"]) < both.index(texts["situation.third_party"])
    other = reply(responder, Level.CRISIS, (Tag.THIRD_PARTY,), locale=lang, country="UA").text
    assert texts["situation.self"] not in other and texts["situation.third_party"] in other


def test_a_person_at_risk_who_is_also_abused_sees_the_crisis_line_first(responder: SafeResponder) -> None:
    own = reply(responder, Level.CRISIS, (Tag.SELF, Tag.ABUSE), locale="uk", country="UA")
    assert [h.number for h in own.helplines][:2] == ["7333", "116 123"]
    abused = reply(responder, Level.CRISIS, (Tag.ABUSE,), locale="uk", country="UA")
    assert abused.helplines[0].number == "116 123"
    child = reply(responder, Level.CRISIS, (Tag.SELF, Tag.ABUSE, Tag.MINOR), locale="uk", country="UA")
    assert child.helplines[0].number == "116 111"  # a child's line first, always


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_safety_question_at_concern_fits_the_situation(responder: SafeResponder, lang: str) -> None:
    """A parent afraid of hurting their baby is asked about that, not whether they want to end their life."""
    texts = responder.texts[lang]
    worried = reply(responder, Level.CONCERN, (Tag.HARM_TO_OTHERS, Tag.MINOR), locale=lang, country="UA").text
    assert texts["ask_safety.harm_to_others"] in worried and texts["ask_safety.self"] not in worried
    own = reply(responder, Level.CONCERN, (Tag.SELF,), locale=lang, country="UA").text
    assert texts["ask_safety.self"] in own


def test_a_child_in_the_us_reporting_abuse_gets_a_childrens_line_first(responder: SafeResponder) -> None:
    child = reply(responder, Level.CRISIS, (Tag.ABUSE, Tag.MINOR), locale="en-US", country="US")
    assert child.helplines[0].number == "1-800-422-4453"
