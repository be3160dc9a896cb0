"""The model and tokenizer a run starts from: a hub id or directory to fine-tune, or a new small model.

New models get a byte-level BPE tokenizer trained on the run's own training text (with `tokenizers`,
wrapped in the family's real tokenizer class) so they save and load like the released ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BlenderbotConfig,
    BlenderbotForConditionalGeneration,
    GPT2Config,
    GPT2DoubleHeadsModel,
    GPT2LMHeadModel,
    PreTrainedModel,
)

from inference.prompt import Family, family_of
from inference.synthetic import train_tokenizer
from training.config import ConfigError, ModelConfig, ScratchConfig


def _pretrained(loader: Any, name_or_path: str | Path) -> Any:
    """`loader.from_pretrained` from a directory, or a hub id (from the local Hugging Face cache, else
    downloaded, as any transformers program does; HF_HUB_OFFLINE=1 forbids that); a model that cannot
    be had is one line naming it, not an OSError traceback."""
    try:
        return loader.from_pretrained(name_or_path)
    except OSError as exc:
        if Path(name_or_path).is_dir():
            raise ConfigError(f"model {name_or_path}: cannot load it: {str(exc).splitlines()[0]}") from None
        raise ConfigError(
            f"model {str(name_or_path)!r} is not a local directory, and it could not be had from the Hugging Face"
            f" hub or its local cache ({str(exc).splitlines()[0]}): on a machine without internet, fetch it"
            f" elsewhere (hf download {name_or_path}) and give its directory"
        ) from None


def load_tokenizer(name_or_path: str | Path) -> Any:
    """The tokenizer of a model to fine-tune; GPT-2 style ones get EOS as the padding token."""
    tokenizer = _pretrained(AutoTokenizer, name_or_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def new_tokenizer(scratch: ScratchConfig, texts: Iterable[str]) -> Any:
    return train_tokenizer(scratch.family, scratch.vocab_size, texts)


def build_model(config: ModelConfig, tokenizer: Any) -> tuple[PreTrainedModel, Family]:
    """Load or create the model; with the distractor head a GPT-2 model gets GPT2DoubleHeadsModel."""
    if config.scratch is None:
        assert config.name_or_path is not None
        hf_config = _pretrained(AutoConfig, config.name_or_path)
        family = family_of(hf_config)
        if config.distractor.enabled:
            if hf_config.model_type != "gpt2":
                raise ValueError(f"the distractor head needs a GPT-2 model, not {hf_config.model_type}")
            return _pretrained(GPT2DoubleHeadsModel, config.name_or_path), family
        auto = AutoModelForSeq2SeqLM if family == "seq2seq" else AutoModelForCausalLM
        return _pretrained(auto, config.name_or_path), family
    s = config.scratch
    if s.family == "seq2seq":
        ids = dict(
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.bos_token_id,
            forced_eos_token_id=tokenizer.eos_token_id,
        )
        shape = dict(
            d_model=s.hidden,
            encoder_layers=s.layers,
            decoder_layers=s.layers,
            encoder_attention_heads=s.heads,
            decoder_attention_heads=s.heads,
            encoder_ffn_dim=s.ffn or 4 * s.hidden,
            decoder_ffn_dim=s.ffn or 4 * s.hidden,
            max_position_embeddings=s.positions,
            dropout=s.dropout,
        )
        return BlenderbotForConditionalGeneration(
            BlenderbotConfig(vocab_size=len(tokenizer), **shape, **ids)
        ), "seq2seq"
    eos = tokenizer.eos_token_id
    gpt2 = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=s.positions,
        n_embd=s.hidden,
        n_layer=s.layers,
        n_head=s.heads,
        n_inner=s.ffn,
        resid_pdrop=s.dropout,
        embd_pdrop=s.dropout,
        attn_pdrop=s.dropout,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model_class = GPT2DoubleHeadsModel if config.distractor.enabled else GPT2LMHeadModel
    return model_class(gpt2), "causal"


def for_serving(model: PreTrainedModel) -> PreTrainedModel:
    """The language-model part only, so the directory loads with AutoModelForCausalLM as it is."""
    if not isinstance(model, GPT2DoubleHeadsModel):
        return model
    lm = GPT2LMHeadModel(model.config)
    lm.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("multiple_choice_head")})
    lm.generation_config = model.generation_config
    return lm.to(model.device)


def count_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())
