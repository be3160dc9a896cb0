"""Finding a user's helplines: explicit setting, phone prefix, locale, fallback; bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.crisis.helplines import DEFAULT_PATH, INTERNATIONAL, HelplineDirectory, HelplineError
from bot.crisis.levels import Tag


@pytest.fixture(scope="module")
def directory() -> HelplineDirectory:
    return HelplineDirectory.load()


@pytest.mark.parametrize(
    ("phone", "country"),
    [
        ("+380 67 123 45 67", "UA"),
        ("+48 600-100-200", "PL"),
        ("0048600100200", "PL"),
        ("+44 (20) 7946 0018", "GB"),
        ("+1 415 555 0100", "US"),
        ("+49 30 1234567", INTERNATIONAL),
        ("0671234567", INTERNATIONAL),  # a national number says nothing about the country
    ],
)
def test_country_from_phone_prefix(directory: HelplineDirectory, phone: str, country: str) -> None:
    assert directory.country_for(phone=phone) == country


@pytest.mark.parametrize(
    ("locale", "country"),
    [("uk-UA", "UA"), ("uk_UA", "UA"), ("uk", "UA"), ("pl", "PL"), ("pl-PL", "PL"), ("en-GB", "GB"),
     ("en-US", "US"), ("ru-UA", "UA"), ("de-PL", "PL"), ("ru", INTERNATIONAL), ("en", INTERNATIONAL),
     ("xx", INTERNATIONAL)],
)  # fmt: skip
def test_country_from_locale(directory: HelplineDirectory, locale: str, country: str) -> None:
    assert directory.country_for(locale=locale) == country


def test_explicit_setting_wins_over_phone_and_locale(directory: HelplineDirectory) -> None:
    assert directory.country_for(country="pl", phone="+380671234567", locale="uk-UA") == "PL"
    assert directory.country_for(country="UK") == "GB"  # the common alias
    assert directory.country_for(country="DE", phone="+48600100200") == INTERNATIONAL
    assert directory.country_for(phone="+48600100200", locale="uk-UA") == "PL"
    assert directory.country_for() == INTERNATIONAL


def test_every_country_has_emergency_number_and_sourced_helplines(directory: HelplineDirectory) -> None:
    expected = {"UA": ("112", "7333"), "PL": ("112", "116 123"), "GB": ("999", "116 123"), "US": ("911", "988")}
    for code, (emergency, line) in expected.items():
        resources = directory.resources(country=code)
        assert resources.emergency.number == emergency
        assert line in [h.number for h in resources.helplines]
        assert all(h.source.startswith("https://") and h.hours for h in resources.helplines)
    assert "800 70 2222" in [h.number for h in directory.resources(country="PL").helplines]
    fallback = directory.resources(locale="fr-FR")
    assert fallback.country == INTERNATIONAL and fallback.helplines


def test_the_file_says_numbers_must_be_reverified() -> None:
    doc = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    assert "RE-VERIFY" in doc["notice"]


def test_topic_lines_come_first_for_abuse_and_minors(directory: HelplineDirectory) -> None:
    ua = directory.resources(country="UA")
    assert ua.pick()[0].number == "7333"
    assert ua.pick([Tag.ABUSE])[0].number == "116 123"
    assert ua.pick([Tag.MINOR])[0].number == "116 111"
    assert "116 111" not in [h.number for h in ua.pick()]  # the children's line only when it fits


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "helplines.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def good() -> dict:
    line = {"name": "L", "number": "1", "hours": "24/7", "languages": ["en"], "topics": ["crisis"],
            "source": "https://x", "verified": None}  # fmt: skip
    country = {"name": "Testland", "phone_prefixes": ["+99"], "locales": ["tt"],
               "emergency": {"number": "112", "name": "E", "source": "https://x", "verified": None},
               "helplines": [line]}  # fmt: skip
    return {"version": "1", "countries": {"TT": country}, "international": dict(country)}


def test_a_valid_custom_file_loads(tmp_path: Path) -> None:
    directory = HelplineDirectory.load(write(tmp_path, good()))
    assert directory.country_for(phone="+99 1234") == "TT"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("international"), "needs 'countries'"),
        (lambda d: d["countries"].update({"Tt": d["countries"]["TT"]}), "alpha-2"),
        (lambda d: d["countries"]["TT"].update(phone_prefixes=["0099"]), "not an E.164 prefix"),
        (lambda d: d["countries"]["TT"]["helplines"][0].update(number=7333), r"TT.helplines\[0\]: 'number'"),
        (lambda d: d["countries"]["TT"]["helplines"][0].pop("verified"), "'verified' is required"),
        (lambda d: d["countries"]["TT"].pop("emergency"), "countries.TT: missing 'emergency'"),
        (lambda d: d["countries"]["TT"].update(helplines=[]), "non-empty list"),
    ],
)
def test_a_malformed_file_names_the_entry(tmp_path: Path, mutate, message: str) -> None:
    doc = good()
    mutate(doc)
    with pytest.raises(HelplineError, match=message):
        HelplineDirectory.load(write(tmp_path, doc))
