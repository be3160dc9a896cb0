"""Examples are exactly what the inference prompt builder makes; split, distractors, static blocks, config."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.api import ChatMessage
from inference.prompt import PromptBuilder
from inference.synthetic import train_tokenizer
from tests.training_fixtures import tiny_config, tiny_config_file
from training.collate import Collator
from training.config import ConfigError, apply_override, load_config
from training.examples import IGNORE, Example, add_distractors, build_examples, fit_to_block, is_validation
from training.readers import Dialogue

TURNS = [
    "My exam is tomorrow.",
    "That is a lot of pressure. How are you feeling?",
    "Tired and scared.",
    "That makes sense. When did you last rest?",
    "Yesterday, a little.",
    "Could you take a short break tonight?",
]
DIALOGUE = Dialogue(
    ("I am a volunteer listener.", "I like tea."),
    tuple(ChatMessage("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(TURNS)),
    "x:1",
)


@pytest.fixture(scope="module", params=["causal", "seq2seq"])
def builder(request: pytest.FixtureRequest) -> PromptBuilder:
    tokenizer = train_tokenizer(request.param, 400, TURNS + list(DIALOGUE.persona))
    return PromptBuilder(tokenizer, request.param, 256)


def test_examples_equal_prompt_builder_output(builder: PromptBuilder) -> None:
    examples = build_examples([DIALOGUE], builder, context_turns=2, max_response_tokens=64)
    assert len(examples) == 3  # one per listener turn
    for example, i in zip(examples, (1, 3, 5), strict=True):
        context = DIALOGUE.turns[max(0, i - 2) : i]
        assert list(example.prompt) == builder.prompt_ids(DIALOGUE.persona, context)
        assert list(example.response) == builder.response_ids(TURNS[i])
    assert examples[2].prompt != builder.prompt_ids(DIALOGUE.persona, DIALOGUE.turns[:5])  # older turns left out


def test_model_inputs_mask_the_prompt(builder: PromptBuilder) -> None:
    example = build_examples([DIALOGUE], builder, 4, 64)[1]
    batch = Collator(builder.family, builder.tokenizer.pad_token_id, multiple=8)([example])
    labels = batch["labels"][0].tolist()
    if builder.family == "causal":
        ids, expected = example.causal()
        assert batch["input_ids"][0, : len(ids)].tolist() == builder.prompt_ids(
            DIALOGUE.persona, DIALOGUE.turns[:3]
        ) + builder.response_ids(TURNS[3])
        assert labels[: len(example.prompt)] == [IGNORE] * len(example.prompt)
        assert labels[len(example.prompt) : len(ids)] == list(example.response) == expected[len(example.prompt) :]
    else:
        assert batch["input_ids"][0, : len(example.prompt)].tolist() == list(example.prompt)
        assert labels[: len(example.response)] == list(example.response)
    assert set(labels[len(example.causal()[0]) if builder.family == "causal" else len(example.response) :]) <= {IGNORE}
    assert batch["input_ids"].shape[-1] % 8 == 0


def test_long_reply_is_cut_without_eos(builder: PromptBuilder) -> None:
    (whole, *_) = build_examples([DIALOGUE], builder, 4, max_response_tokens=64)
    (cut, *_) = build_examples([DIALOGUE], builder, 4, max_response_tokens=5)
    assert whole.response[-1] == builder.eos_id  # a whole reply ends with EOS: the model learns to stop there
    assert cut.response == whole.response[:5] and builder.eos_id not in cut.response  # a cut one never says stop


def test_split_is_deterministic_and_by_content() -> None:
    dialogues = [
        Dialogue((), (ChatMessage("user", f"hello {i}"), ChatMessage("assistant", "hi")), f"f:{i}") for i in range(400)
    ]
    held = [is_validation(d, 0.1, seed=3) for d in dialogues]
    assert held == [is_validation(Dialogue(d.persona, d.turns, "elsewhere:9"), 0.1, 3) for d in dialogues]
    assert 20 < sum(held) < 60
    assert held != [is_validation(d, 0.1, seed=4) for d in dialogues]


def test_distractors_are_other_replies() -> None:
    examples = [Example((1, 2), (10 + i, 0)) for i in range(5)]
    with_mc = add_distractors(examples, num_candidates=3, seed=0, split="training")
    assert with_mc == add_distractors(examples, 3, 0, "training")
    for e in with_mc:
        assert len(e.distractors) == 2 and e.response not in e.distractors
    batch = Collator("causal", 0, distractors=True)(with_mc[:2])
    assert batch["input_ids"].shape[:2] == (2, 3) and batch["mc_labels"].tolist() == [2, 2]
    assert (batch["labels"][:, :2] == IGNORE).all()  # LM loss only on the true reply (last candidate)


def test_distractors_from_one_repeated_reply_are_refused_naming_the_split() -> None:
    examples = [Example((1, 2 + i), (10, 0)) for i in range(5)]
    with pytest.raises(ValueError, match="every validation example has the same reply"):
        add_distractors(examples, num_candidates=2, seed=0, split="validation")
    varied = add_distractors([*examples, Example((1,), (11, 0))], num_candidates=3, seed=0, split="validation")
    assert all(e.distractors == ((11, 0), (11, 0)) for e in varied[:5])


def test_fit_to_block_truncates_oldest_or_drops() -> None:
    long = Example(tuple(range(10)), (50, 51, 0))
    (cut,) = fit_to_block([long], "causal", block=8, overflow="truncate")
    assert cut.prompt == (5, 6, 7, 8, 9) and cut.response == long.response
    assert fit_to_block([long], "causal", 8, "drop") == []
    (enc,) = fit_to_block([long], "seq2seq", 8, "truncate")
    assert enc.prompt == tuple(range(2, 10))


def test_config_paths_overrides_and_errors(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path, overrides=["train.max_steps=3", "data.sources.0.format=jsonl", "batching.mode=static"]
    )
    assert config.train.max_steps == 3 and config.batching.mode == "static"
    assert config.data.sources[0].path.is_absolute()
    raw = {"a": [{"b": 1}]}
    apply_override(raw, "a.0.b=[1, 2]")
    assert raw == {"a": [{"b": [1, 2]}]}
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_override(raw, "nonsense")
    with pytest.raises(ConfigError, match=r"train.max_stpes: Extra inputs"):
        load_config(str(tiny_config_file(tmp_path)), ["train.max_stpes=3"])
    with pytest.raises(ConfigError, match="exactly one of model.name_or_path"):
        load_config(str(tiny_config_file(tmp_path)), ["model.name_or_path=gpt2"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no-such-config")


def test_home_in_paths_is_expanded(tmp_path: Path) -> None:
    home = Path.home()
    config = tiny_config(
        tmp_path,
        overrides=[
            "data.sources.0.path=~/chats/result.json",
            "output_dir=~/models/me",
            "run_dir=~/runs/me",
            "model.scratch=null",
            "model.name_or_path=~/models/base",
        ],
    )
    assert config.data.sources[0].path == home / "chats" / "result.json"
    assert (config.output_dir, config.run_dir) == (home / "models" / "me", home / "runs" / "me")
    assert config.model.name_or_path == str(home / "models" / "base")
    assert (
        tiny_config(tmp_path, overrides=["model.scratch=null", "model.name_or_path=org/m"]).model.name_or_path
        == "org/m"
    )


def test_bundled_configs_validate() -> None:
    for name in ("demo", "blenderbot-400m-empathetic", "dialogpt-medium-telegram", "gaudi"):
        assert load_config(name).name


def test_generation_config_drops_settings_the_decoding_mode_does_not_use() -> None:
    from training.config import ModelConfig, ScratchConfig
    from training.export import generation_config
    from training.modeling import build_model

    tokenizer = train_tokenizer("seq2seq", 400, TURNS)
    model, family = build_model(
        ModelConfig(
            scratch=ScratchConfig(family="seq2seq", vocab_size=400, layers=1, hidden=16, heads=2, positions=64)
        ),
        tokenizer,
    )
    recipe = generation_config(family, model, tokenizer, {})
    assert (recipe.num_beams, recipe.min_length, recipe.no_repeat_ngram_size) == (10, 20, 3)  # BlenderBot's
    greedy = generation_config(family, model, tokenizer, {"num_beams": 1, "do_sample": False})
    assert greedy.length_penalty is None and greedy.early_stopping is None  # unset: the library defaults apply
    assert greedy.decoder_start_token_id == tokenizer.bos_token_id and greedy.eos_token_id == tokenizer.eos_token_id
