"""Random-weight models of real sizes, with tokenizers trained on the spot, for offline work.

Benchmarks time the released architectures (DialoGPT-small = GPT-2 124M, BlenderBot-400M-distill)
without downloading weights, and tests build tiny models of both families; both save them with
`save_pretrained` so they load through the same `from_pretrained` path a hub model takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    BlenderbotConfig,
    BlenderbotForConditionalGeneration,
    BlenderbotTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    PreTrainedModel,
)

from inference.generation import apply_family_defaults
from inference.prompt import Family

GPT2_EOS = "<|endoftext|>"
BLENDERBOT_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as in BlenderBot's vocab


@dataclass(frozen=True, slots=True)
class Spec:
    """An architecture size; `tokenizer_vocab` is what we train locally, `config` the model's."""

    family: Family
    config: dict[str, Any]
    tokenizer_vocab: int


SPECS: dict[str, Spec] = {
    # GPT-2 small, as microsoft/DialoGPT-small.
    "dialogpt-small": Spec("causal", dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257), 8000),
    # facebook/blenderbot-400M-distill.
    "blenderbot-400m": Spec(
        "seq2seq",
        dict(
            d_model=1280,
            encoder_layers=2,
            decoder_layers=12,
            encoder_attention_heads=32,
            decoder_attention_heads=32,
            encoder_ffn_dim=5120,
            decoder_ffn_dim=5120,
            max_position_embeddings=128,
            vocab_size=8008,
            scale_embedding=True,
        ),
        8008,
    ),
    # Tiny models for tests: a few layers, a small vocabulary.
    "tiny-causal": Spec("causal", dict(n_layer=2, n_embd=32, n_head=2, n_positions=128, vocab_size=600), 600),
    "tiny-seq2seq": Spec(
        "seq2seq",
        dict(
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            vocab_size=600,
        ),
        600,
    ),
}


def sample_conversations() -> list[dict[str, list[str]]]:
    """The bundled support-style conversations: {"persona": [...], "turns": [user, bot, user, ...]}."""
    text = resources.files("inference").joinpath("data/conversations.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _corpus() -> Iterator[str]:
    for conversation in sample_conversations():
        yield from conversation["persona"]
        yield from conversation["turns"]


def train_tokenizer(family: Family, vocab_size: int, texts: Iterable[str] | None = None) -> Any:
    """A byte-level BPE tokenizer trained on `texts` (the bundled conversations by default),
    wrapped in the family's real tokenizer class so it saves and loads like the released one."""
    specials = BLENDERBOT_SPECIALS if family == "seq2seq" else [GPT2_EOS]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=family == "seq2seq")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts if texts is not None else _corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    if family == "seq2seq":
        return BlenderbotTokenizer(vocab=state["vocab"], merges=merges)
    return GPT2Tokenizer(vocab=state["vocab"], merges=merges, pad_token=GPT2_EOS)


def build_model(name: str, seed: int = 0) -> tuple[PreTrainedModel, Any]:
    """A random-weight model of the named size and its locally trained tokenizer."""
    if name not in SPECS:
        raise KeyError(f"unknown synthetic model {name!r}; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    tokenizer = train_tokenizer(spec.family, spec.tokenizer_vocab)
    torch.manual_seed(seed)
    if spec.family == "seq2seq":
        ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, forced_eos_token_id=2)
        model: PreTrainedModel = BlenderbotForConditionalGeneration(BlenderbotConfig(**spec.config, **ids))
    else:
        eos = tokenizer.eos_token_id
        model = GPT2LMHeadModel(GPT2Config(**spec.config, bos_token_id=eos, eos_token_id=eos))
    apply_family_defaults(model.generation_config, spec.family)
    return model.eval(), tokenizer


def save_model(name: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a synthetic model as the training pipeline writes one: weights, tokenizer, generation_config."""
    model, tokenizer = build_model(name, seed)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
