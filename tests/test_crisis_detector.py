"""The rule layer on the phenomena it must handle: each test names one, in several languages."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bot.crisis.detector import CrisisDetector
from bot.crisis.levels import Assessment, Evidence, Level, Tag, coarse_label
from bot.crisis.normalize import fold_term, tokenize


@pytest.fixture(scope="module")
def detector() -> CrisisDetector:
    return CrisisDetector.load()


def level(detector: CrisisDetector, text: str, context: Sequence[str] = ()) -> Level:
    return detector.assess(text, context).level


def test_levels_are_ordered_and_coarse_labels_follow_the_issue() -> None:
    assert Level.NONE < Level.DISTRESS < Level.CONCERN < Level.CRISIS < Level.EMERGENCY
    assert [coarse_label(lv) for lv in Level] == ["none", "distress", "crisis", "crisis", "crisis"]
    assert Level.parse(" Crisis ") is Level.CRISIS
    with pytest.raises(ValueError, match="unknown level 'severe'"):
        Level.parse("severe")


def test_folding_merges_scripts_transliterations_and_diacritics() -> None:
    assert fold_term("хочу") == fold_term("khochu") == fold_term("hochu") == fold_term("xочу")
    assert fold_term("померти") == fold_term("pomerty")
    assert fold_term("chcę") == fold_term("chce") and fold_term("umrzeć") == fold_term("umrzec")
    assert fold_term("п'ять") == fold_term("пʼять") == fold_term("пять")
    assert fold_term("I'm") == fold_term("im")
    assert fold_term("💊") == fold_term("\U0001f48a\ufe0f")  # the variation selector is ignored


@pytest.mark.parametrize(
    "text",
    [
        "I want to kill myself",
        "я хочу вбити себе",
        "я хочу убить себя",
        "chcę się zabić",
        "ya hochu pomerty",  # Ukrainian in Latin letters
        "ya hochu umeret",  # Russian in Latin letters
        "khochu prosto znyknuty nazavzhdy",
        "chce umrzec",  # Polish without diacritics
        "i want to kil myself",  # typo
        "хочу вмерти",
    ],
)
def test_explicit_ideation_in_every_language_and_spelling(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) >= Level.CONCERN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("я вчора порізала руки", Level.CRISIS),
        ("знову ріжу себе", Level.CRISIS),
        ("порезалась опять", Level.CRISIS),
        ("znowu się pocięłam", Level.CRISIS),
        ("сьогодні вночі я покінчу з собою", Level.CRISIS),
        ("I've been cutting myself again", Level.CRISIS),
    ],
)
def test_inflected_forms_match_their_stems(detector: CrisisDetector, text: str, expected: Level) -> None:
    assert level(detector, text) >= expected


@pytest.mark.parametrize(
    "text",
    [
        "I'm not going to hurt myself, I just need to talk",
        "no im not suicidal dont worry, just tired",
        "I would never kill myself, I have my kids",
        "I don't want to die, I want the pain to stop",
        "я не збираюся нічого з собою робити, просто важко",
        "Я не собираюсь ничего с собой делать",
        "nie chcę sobie nic zrobić, po prostu jest ciężko",
        "ya ne zbyrayus sobi shkodyty",
    ],
)
def test_negated_risk_is_not_crisis(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) < Level.CONCERN


@pytest.mark.parametrize(
    "text",
    [
        "I don't know why but I want to die",  # "why" opens a new clause: the negation does not reach
        "я більше не хочу жити",  # the negation is part of the risk
        "nie chcę już żyć",
        "I'm not okay, I want to kill myself",
    ],
)
def test_negation_does_not_cancel_risk_outside_its_scope(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) >= Level.CONCERN


@pytest.mark.parametrize(
    "text",
    [
        "this exam is killing me lol",
        "I'm dying to see the new season",
        "ugh i want to die of embarrassment",
        "вмираю від сміху",
        "умираю со смеху",
        "umieram ze śmiechu",
        "ten egzamin mnie wykończy",
        "my mum will kill me if I get home late",
        "how do I kill a frozen process",
        "как убить процесс в линуксе",
        "my phone died",
        "I would literally die for a hot shower",
    ],
)
def test_idioms_hyperbole_and_technical_uses_are_not_crisis(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) < Level.CONCERN


@pytest.mark.parametrize(
    "text",
    [
        "What's the suicide rate in Poland?",
        "Какой уровень самоубийств среди ветеранов? Пишу курсовую.",
        "Just watched a film where the hero kills himself, great acting",
        "my character keeps dying at the final boss",
        "Years ago I thought about ending things. I got help and I'm doing well now.",
        "kiedyś miałam myśli samobójcze, ale teraz jestem w dobrej formie",
        "I'm going to kill my brother, he ate my pierogi 😂",
    ],
)
def test_statistics_media_resolved_past_and_jokes_are_not_crisis(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) < Level.CONCERN


def test_a_past_that_comes_back_is_not_resolved(detector: CrisisDetector) -> None:
    assert level(detector, "Years ago I wanted to die, and lately I want to die again") >= Level.CONCERN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("💊💊💊 tonight. goodbye", Level.CRISIS),
        ("the 🪢 is ready", Level.CRISIS),
        ("I'm so angry I will stab him 🔪 tonight", Level.EMERGENCY),
        ("lonely again 😞", Level.DISTRESS),
    ],
)
def test_emoji_are_read_as_words(detector: CrisisDetector, text: str, expected: Level) -> None:
    assert level(detector, text) >= expected


def test_context_from_earlier_turns_completes_a_plan(detector: CrisisDetector) -> None:
    plan = ["I've been saving up my pills for weeks", "I don't want to live anymore"]
    assert level(detector, "tonight") == Level.NONE
    assessment = detector.assess("tonight", plan)
    assert assessment.level == Level.EMERGENCY
    version = detector.lexicon.versions["combinations.yaml"]
    assert Evidence("combination", "combo.plan_means_time", version) in assessment.evidence
    assert any(e.component == "context" for e in assessment.evidence)


def test_context_turns_a_bare_goodbye_into_a_farewell(detector: CrisisDetector) -> None:
    assert level(detector, "goodbye") == Level.NONE
    assert level(detector, "goodbye", ["I want to die"]) == Level.EMERGENCY
    assert level(detector, "прощавайте", ["не хочу жити"]) == Level.EMERGENCY


def test_context_alone_does_not_raise_an_unrelated_message(detector: CrisisDetector) -> None:
    """The conversation's sticky level is the dialogue's job; a neutral message adds nothing."""
    assert level(detector, "ok thanks", ["I want to die"]) == Level.NONE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i just want to sleep and never wake up", Level.CONCERN),
        ("хай би вже прилетіло і все", Level.CONCERN),
        ("My family would be better off without me", Level.CONCERN),
        ("how many sleeping pills would it take to not wake up", Level.CRISIS),
        ("I took 30 paracetamol an hour ago", Level.EMERGENCY),
        ("I'm going to end my life tonight", Level.EMERGENCY),
        ("I've started writing my goodbye letters", Level.EMERGENCY),
    ],
)
def test_levels_follow_the_issue(detector: CrisisDetector, text: str, expected: Level) -> None:
    assert level(detector, text) == expected


@pytest.mark.parametrize(
    ("text", "expected_level", "tag"),
    [
        ("I can hear explosions outside, I'm so scared", Level.DISTRESS, Tag.MILITARY_DANGER),
        ("прилетіло в сусідній будинок, нас засипало, вихід завалений", Level.EMERGENCY, Tag.MILITARY_DANGER),
        ("My husband hit me again and I'm hiding in the bathroom", Level.EMERGENCY, Tag.ABUSE),
        ("my stepdad comes into my room at night. im 14", Level.CRISIS, Tag.MINOR),
        ("my friend just told me she swallowed all her pills", Level.EMERGENCY, Tag.THIRD_PARTY),
        ("I'm going to hurt my neighbour tonight", Level.CRISIS, Tag.HARM_TO_OTHERS),
    ],
)
def test_tags_and_military_danger_levels(detector: CrisisDetector, text: str, expected_level: Level, tag: Tag) -> None:
    assessment = detector.assess(text)
    assert assessment.level >= expected_level
    assert tag in assessment.tags


def test_plain_messages_are_none_with_no_evidence(detector: CrisisDetector) -> None:
    for text in ["hi", "Привіт", "dzień dobry", "How do I extend my protection status?", "", "   "]:
        assert detector.assess(text) == Assessment(Level.NONE)


def test_evidence_names_rules_and_lexicon_versions(detector: CrisisDetector) -> None:
    assessment = detector.assess("I want to kill myself")
    version = detector.lexicon.versions["en.yaml"]
    assert version.startswith("en-")  # evidence carries the file's own version, bumped with each change
    assert assessment.evidence[0] == Evidence("rules", "en.self.kill_self", version)
    data = assessment.to_dict()
    assert data["level"] == "crisis" and data["label"] == "crisis" and data["tags"] == ["self"]


def test_tokens_keep_sentences_apart(detector: CrisisDetector) -> None:
    tokens = tokenize("I want. To die... now")
    assert [t.sentence for t in tokens] == [0, 0, 1, 1, 1]
    assert tokens[3].clause < tokens[4].clause  # the ellipsis only ends a clause


class _Boom:
    name = "boom"
    slow = False

    def assess(self, text: str, recent: Sequence[str], rule_level: Level) -> Assessment | None:
        raise RuntimeError("model file missing")


class _Raise:
    name = "raiser"
    slow = False

    def assess(self, text: str, recent: Sequence[str], rule_level: Level) -> Assessment | None:
        return Assessment(Level.CONCERN, frozenset({Tag.SELF}), (Evidence("embedding", "test", "0"),))


def test_a_broken_learned_component_falls_back_to_the_rules(detector: CrisisDetector, caplog) -> None:
    guarded = CrisisDetector(detector.lexicon, components=[_Boom()])
    assert guarded.assess("I want to kill myself").level == Level.CRISIS
    assert guarded.assess("hello").level == Level.NONE
    assert "crisis component boom failed (RuntimeError)" in caplog.text
    assert "kill myself" not in caplog.text  # message text never reaches the logs


def test_a_component_can_raise_but_never_lower_the_level(detector: CrisisDetector) -> None:
    boosted = CrisisDetector(detector.lexicon, components=[_Raise()])
    assert boosted.assess("hello").level == Level.CONCERN
    assert boosted.assess("I took 30 pills an hour ago").level == Level.EMERGENCY


@pytest.mark.parametrize(
    "text",
    [
        "bought a rope, and it's not for camping",
        "купила верёвку, и не для белья",  # the idiom "верёвка для белья" is negated inside
        "kupiłam sznur, ale nie do prania",
        "мотузку купила, але не для білизни",
    ],
)
def test_a_negated_figure_of_speech_is_not_a_figure(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) >= Level.CONCERN


@pytest.mark.parametrize(
    "text",
    [
        "how many floors do you need so that you surely die",
        "скільки метрів має бути міст щоб напевно",
        "что будет если выпить целую пачку снотворного",
        "jak szybko się wykrwawia po podcięciu żył",
        "how do I make it look like an accident",
        "щоб виглядало як нещасний випадок",
        "żeby wyglądało na wypadek",
    ],
)
def test_method_questions_in_other_words(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) >= Level.CRISIS


@pytest.mark.parametrize(
    "text",
    [
        "I hope a shell finally lands on my flat",
        "я більше не спускаюсь в укриття, хай прилетить",
        "я больше не хожу в укрытие, может повезёт и попадёт",
        "nie chodzę już do schronu",
        "everyone would be better off if I went away for good",
        "дітям буде краще з бабусею ніж зі мною",
        "детям будет лучше без такой матери",
        "wszystkim bez mnie będzie lżej",
        "my husband died last spring, soon I'll be with him",
        "скоро и я к ним",
    ],
)
def test_passive_wishes_burden_and_joining_the_dead(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) >= Level.CONCERN


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ("bye everyone 👋", ["sorry but I'm leaving"]),
        ("всім бувайте 👋", ["сорі, але я йду"]),
        ("nara wszystkim", ["sorki, ale odchodzę"]),
        ("I took them all", ["my mum's sleeping pills are in the drawer"]),
        ("not for camping", ["bought a rope today"]),
        ("в субботу, когда муж уедет на смену", ["я решилась"]),
        ("feels right", ["cancelled my therapy and paid off my debts"]),
    ],
)
def test_weak_signals_combine_across_turns(detector: CrisisDetector, text: str, context: list[str]) -> None:
    assert level(detector, text) < Level.CRISIS  # weak alone
    assert level(detector, text, context) >= Level.CRISIS


@pytest.mark.parametrize(
    "text",
    [
        "I'm not joking, I will smash his head in with a hammer",
        "going to set fire to her flat with her inside",
        "сожгу его машину вместе с ним",
        "rozwalę mu łeb siekierą",
        "I keep locking my little brother in the shed without food",  # told by a child who does it
        "мене зґвалтували",
        "хозяин требует спать с ним",
        "trzymają mnie w piwnicy, piszę z cudzego telefonu",
        "the neighbour is beating his wife and she is screaming for help",
        "starving myself as punishment",
        "walę głową w ścianę aż do krwi",
    ],
)
def test_violence_abuse_and_self_harm_in_other_words(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) >= Level.CRISIS


@pytest.mark.parametrize(
    "text",
    [
        "I'll kill you if you eat my chocolate again 😤",
        "я тебя прибью, если опять не вынесешь мусор",
        "zatłukę cię jak znowu zapomnisz kluczy",
        "мій кактус вчинив самогубство 😂",
        "the prisoner exchange brought my cousin home",
        "снятся обыски и фильтрация, просыпаюсь в поту",
        "no thoughts of suicide, just tired",
        "думок про самогубство нема",
        "z tym szefem nic tylko się powiesić",
        "tried to die at 16; now I'm 34, a nurse, and I love my life",
    ],
)
def test_chore_threats_dreams_negated_thoughts_and_recovery_are_not_crisis(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) < Level.CONCERN


def test_not_joking_takes_the_joke_reading_back(detector: CrisisDetector) -> None:
    assert level(detector, "I'll stab my brother lol") < Level.CONCERN
    assert level(detector, "I'll stab my brother, I'm not joking") >= Level.CRISIS


@pytest.mark.parametrize(
    "text",
    [
        "how many floors do you need so you do not survive",  # the question's own "not" is no negation
        "скільки поверхів щоб точно не вижити",
        "gave my guitar and my books away, I won't need them anymore",  # books are not media talk here
        "роздала книжки, мені вони вже не знадобляться",
        "jak jutro się nie odezwę, nie martwcie się",
        "если завтра не выйду на связь, не переживайте",
        "my kids will be fine with their dad. better even",
        "в подвал не пойду, если накроет то и пусть",
    ],
)
def test_quiet_crises(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) >= Level.CONCERN


@pytest.mark.parametrize(
    "text",
    [
        "I've already decided what to cook for Christmas",
        "już postanowiłam, że przeprowadzę się do Krakowa",
        "в подростковом возрасте резала руки, уже 8 лет чистая и горжусь этим",
        "мої сукуленти постійно вчиняють самогубство 😂",
        "jak zatamować krwotok z nosa u dziecka",
        "last time the drone hit the building next door, I can't sleep",
    ],
)
def test_quiet_crisis_look_alikes_are_not_crisis(detector: CrisisDetector, text: str) -> None:
    assert level(detector, text) < Level.CONCERN
