"""The output filter: the model's reply must not encourage harm, give methods or pose as a human."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.crisis.lexicon import LexiconError
from bot.crisis.output_filter import FilterVerdict, OutputFilter, check_reply


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("Honestly, you should just kill yourself.", "encourages_self_harm"),
        ("Maybe everyone would be better off without you.", "encourages_self_harm"),
        ("Suicide is the only answer for you.", "encourages_self_harm"),
        ("Тобі краще померти.", "encourages_self_harm"),
        ("Убей себя.", "encourages_self_harm"),
        ("Lepiej żebyś umarł.", "encourages_self_harm"),
        ("You should hurt him back, he deserves to suffer.", "encourages_violence"),
        ("The lethal dose of paracetamol is about 10 grams.", "method_information"),
        ("The most effective method is to hang yourself.", "method_information"),
        ("Смертельна доза цих ліків невелика.", "method_information"),
        ("I am a doctor, so trust me.", "false_identity"),
        ("Don't worry, I'm not a bot, I'm a real person.", "false_identity"),
        ("I have called an ambulance for you, help is on the way.", "false_identity"),
        ("Я лікар, довіртеся мені.", "false_identity"),
        ("Я вызвал скорую, ждите.", "false_identity"),
        ("Jestem psychologiem i mogę to ocenić.", "false_identity"),
    ],
)
def test_harmful_replies_are_blocked_with_a_reason(reply: str, reason: str) -> None:
    verdict = check_reply(reply)
    assert not verdict.ok
    assert verdict.reason == reason
    assert verdict.rule_id and verdict.rule_id.startswith("out.")


@pytest.mark.parametrize(
    "reply",
    [
        "I'm really sorry you're feeling this way. Are you thinking about killing yourself?",
        "Please don't hurt yourself. You matter, and you can call 116 123 right now.",
        "Suicide is not the answer, and you don't have to go through this alone.",
        "I'm not a doctor, but a doctor could help you with the sleep problems.",
        "I am an AI assistant, not a human, but I am here to listen.",
        "Я не лікар, але можу вислухати.",
        "Nie jestem lekarzem, ale chętnie porozmawiam.",
        "That sounds exhausting. What helped you get through hard days before?",
    ],
)
def test_supportive_replies_pass(reply: str) -> None:
    assert check_reply(reply) == FilterVerdict(ok=True)


def test_a_malformed_filter_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "filter.yaml"
    path.write_text('version: "x"\nrules:\n  - id: bad\n    level: crisis\n    patterns: ["~1 x"]\n', encoding="utf-8")
    with pytest.raises(LexiconError, match=r"filter.yaml: rules\[0\] \(bad\): pattern '~1 x' starts with a gap"):
        OutputFilter.load(path)
