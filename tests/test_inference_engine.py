"""Loading through from_pretrained, padding per family (batched == alone), limits, int8."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig
from transformers.pytorch_utils import Conv1D

from inference.api import ChatMessage, GenerationParams
from inference.cpu import PackedLinear, conv1d_to_linear, pack_linears, packing_available
from inference.device import pick_device, pick_dtype
from inference.engine import ModelLoadError, load_model
from inference.synthetic import build_model
from tests.inference_fixtures import tiny_engines, tiny_model_dirs  # noqa: F401

GREEDY = GenerationParams(temperature=0, num_beams=1, min_tokens=8, max_tokens=12)
CHATS = [
    [ChatMessage("system", "I am kind."), ChatMessage("user", "hi")],
    [ChatMessage("user", "my dog died yesterday and the flat is so quiet without him")],
    [
        ChatMessage("system", "I like tea."),
        ChatMessage("user", "I can't sleep"),
        ChatMessage("assistant", "What keeps you awake?"),
        ChatMessage("user", "work, mostly. my manager keeps piling things on me"),
    ],
    [ChatMessage("user", "hello " * 12 + "is anyone there")],
]


@pytest.fixture(params=["causal", "seq2seq"])
def engine(request, tiny_engines):  # noqa: F811
    return tiny_engines[request.param]


def test_family_and_defaults_come_from_the_saved_directory(tiny_engines):  # noqa: F811
    seq2seq, causal = tiny_engines["seq2seq"], tiny_engines["causal"]
    assert (seq2seq.family, causal.family) == ("seq2seq", "causal")
    beam = seq2seq.generation_config
    assert (beam.num_beams, beam.min_length, beam.no_repeat_ngram_size, beam.do_sample) == (10, 20, 3, False)
    assert causal.generation_config.do_sample is True and causal.generation_config.top_p == 0.9
    assert seq2seq.prompts.max_prompt_tokens == 64  # the tiny config's max_position_embeddings


def test_model_own_generation_config_wins_over_family_defaults(tmp_path, tiny_model_dirs):  # noqa: F811
    model, tokenizer = build_model("tiny-seq2seq")
    model.generation_config = GenerationConfig(
        num_beams=4, max_length=41, decoder_start_token_id=1, eos_token_id=2, pad_token_id=0
    )
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    engine = load_model(str(tmp_path))
    assert engine.generation_config.num_beams == 4
    assert engine.generation_config.max_new_tokens == 40  # seq2seq max_length counts the decoder start
    assert engine.generation_config.no_repeat_ngram_size == 3  # unset there, so the family default


def test_missing_model_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_model(str(missing))


def test_unreadable_model_names_the_path(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_model(str(tmp_path))


def test_directory_without_weights_is_a_load_error(tmp_path, tiny_model_dirs):  # noqa: F811
    source = tiny_model_dirs["causal"]
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_model(str(tmp_path))


def test_batched_equals_alone_on_token_ids(engine):
    prompts = [engine.prompt_ids(chat) for chat in CHATS]
    assert len({len(p) for p in prompts}) == len(prompts)  # different lengths: padding is exercised
    config, limit = engine.request(GREEDY, max(len(p) for p in prompts))
    alone = [engine.generate([p], config, [limit])[0] for p in prompts]
    batched = engine.generate(prompts, config, [limit] * len(prompts))
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    assert all(len(r.token_ids) >= 8 for r in alone)  # real replies, not an instant EOS


def test_causal_padding_is_left_with_explicit_positions(tiny_engines):  # noqa: F811
    engine = tiny_engines["causal"]
    eos = engine.eos_id
    inputs = engine._pad([[5, eos, 6], [7, 8, eos, 9, eos]])
    assert inputs["input_ids"].tolist() == [[eos, eos, 5, eos, 6], [7, 8, eos, 9, eos]]
    assert inputs["attention_mask"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]  # separators stay visible
    assert inputs["position_ids"].tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_seq2seq_padding_is_right(tiny_engines):  # noqa: F811
    inputs = tiny_engines["seq2seq"]._pad([[5, 2], [7, 8, 9, 2]])
    assert inputs["input_ids"].tolist() == [[5, 2, 0, 0], [7, 8, 9, 2]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert "position_ids" not in inputs


def test_each_row_stops_at_its_own_limit(engine):
    prompts = [engine.prompt_ids(chat) for chat in CHATS]
    config, _ = engine.request(GREEDY, max(len(p) for p in prompts))
    config.min_new_tokens, config.min_length = None, 0
    full = engine.generate(prompts, config, [12] * 4)
    mixed = engine.generate(prompts, config, [3, 12, 5, 7])
    for short, long, limit in zip(mixed, full, [3, 12, 5, 7], strict=True):
        assert short.token_ids == long.token_ids[: len(short.token_ids)]
        assert short.completion_tokens <= limit
        if short.finish_reason == "length":
            assert short.completion_tokens == limit


def test_max_tokens_capped_to_the_model_window(tiny_engines):  # noqa: F811
    causal = tiny_engines["causal"]
    _, limit = causal.request(GenerationParams(max_tokens=1000), prompt_len=100)
    assert limit == causal.max_positions - 100
    seq2seq = tiny_engines["seq2seq"]
    _, limit = seq2seq.request(GenerationParams(max_tokens=1000), prompt_len=60)
    assert limit == seq2seq.max_positions - 1


def test_seeded_sampling_reproduces(tiny_engines):  # noqa: F811
    engine = tiny_engines["causal"]
    prompt = engine.prompt_ids(CHATS[1])
    params = GenerationParams(temperature=1.0, seed=7, max_tokens=10, min_tokens=10)
    config, limit = engine.request(params, len(prompt))
    first = engine.generate([prompt], config, [limit], seed=7)[0]
    second = engine.generate([prompt], config, [limit], seed=7)[0]
    other = engine.generate([prompt], config, [limit], seed=8)[0]
    assert first.token_ids == second.token_ids
    assert first.token_ids != other.token_ids


def test_conv1d_to_linear_keeps_the_function():
    model, _ = build_model("tiny-causal")
    ids = torch.randint(5, 500, (2, 9))
    with torch.no_grad():
        before = model(ids).logits
        assert conv1d_to_linear(model) == 4 * model.config.n_layer
        after = model(ids).logits
    assert not any(isinstance(m, Conv1D) for m in model.modules())
    torch.testing.assert_close(before, after)


@pytest.mark.parametrize("spec", ["tiny-causal", "tiny-seq2seq"])
def test_packed_linears_compute_the_same_function(spec):
    model, _ = build_model(spec)
    ids = torch.randint(5, 500, (2, 9))
    kwargs = {"decoder_input_ids": ids[:, :4]} if model.config.is_encoder_decoder else {}
    with torch.no_grad():
        before = model(ids, **kwargs).logits
        assert pack_linears(model) > 0
        after = model(ids, **kwargs).logits
    assert not any(isinstance(m, (Conv1D, torch.nn.Linear)) for m in model.modules())
    torch.testing.assert_close(before, after, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not packing_available(), reason="this torch has no oneDNN packed linear")
def test_cpu_engine_serves_with_packed_linears(tiny_engines):  # noqa: F811
    assert any(isinstance(m, PackedLinear) for m in tiny_engines["causal"].model.modules())
    assert any(isinstance(m, PackedLinear) for m in tiny_engines["seq2seq"].model.modules())


def test_int8_quantizes_gpt2_projections(tiny_model_dirs):  # noqa: F811
    engine = load_model(str(tiny_model_dirs["causal"]), int8=True)
    modules = list(engine.model.modules())
    quantized = [m for m in modules if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == 4 * engine.model.config.n_layer + 1  # every projection and the LM head
    assert not any(isinstance(m, (Conv1D, torch.nn.Linear)) for m in modules)
    prompt = engine.prompt_ids(CHATS[0])
    config, limit = engine.request(GREEDY, len(prompt))
    assert len(engine.generate([prompt], config, [limit])[0].token_ids) >= 8


def test_int8_refused_for_half_precision(tiny_model_dirs):  # noqa: F811
    with pytest.raises(ModelLoadError, match="fp32"):
        load_model(str(tiny_model_dirs["causal"]), dtype="bfloat16", int8=True)


def test_device_and_dtype_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype(torch.device("cpu"), "float8")
