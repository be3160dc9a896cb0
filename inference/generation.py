"""Generation settings: per-family defaults kept in the model's generation_config, per-request overrides.

Defaults live in `generation_config` (saved beside the weights) so a trained model carries how it
should be decoded; a value the model's own config already sets is never replaced.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import GenerationConfig

from inference.api import GenerationParams
from inference.prompt import Family

# BlenderBot's published recipe (Roller et al. 2020): beam 10, min length 20, no-repeat 3-grams.
SEQ2SEQ_DEFAULTS: dict[str, Any] = dict(
    do_sample=False,
    num_beams=10,
    min_length=20,
    no_repeat_ngram_size=3,
    length_penalty=0.65,
    early_stopping=True,
    max_new_tokens=60,
)
# DialoGPT reads best sampled (nucleus + top-k), greedy decoding repeats itself.
CAUSAL_DEFAULTS: dict[str, Any] = dict(
    do_sample=True,
    top_k=50,
    top_p=0.9,
    temperature=0.7,
    no_repeat_ngram_size=3,
    max_new_tokens=64,
)


def family_defaults(family: Family) -> dict[str, Any]:
    """The decoding defaults for one family (a fresh dict)."""
    return dict(SEQ2SEQ_DEFAULTS if family == "seq2seq" else CAUSAL_DEFAULTS)


def apply_family_defaults(config: GenerationConfig, family: Family) -> GenerationConfig:
    """Fill in the family's defaults where the model's generation_config leaves a field unset.

    Lengths are kept as new-token counts: a seq2seq `max_length` (decoder start included) becomes
    `max_new_tokens`; a causal one counts the prompt too, which means nothing for a chat whose
    prompt varies, so it is dropped (as is a causal `min_length`).
    """
    if config.max_length is not None:
        if family == "seq2seq" and config.max_new_tokens is None:
            config.max_new_tokens = config.max_length - 1
        config.max_length = None
    if family == "causal":
        config.min_length = None
    for key, value in family_defaults(family).items():
        if getattr(config, key, None) is None:
            setattr(config, key, value)
    return config


def request_config(
    base: GenerationConfig, family: Family, params: GenerationParams, max_new_tokens: int
) -> GenerationConfig:
    """The model's config with one request's overrides. temperature 0 means deterministic
    decoding (greedy, or beam search when the model or request asks for beams)."""
    config = copy.deepcopy(base)
    config.max_new_tokens = max_new_tokens
    if params.temperature is not None:
        config.do_sample = params.temperature > 0
        if config.do_sample:
            config.temperature = params.temperature
    if params.top_p is not None:
        config.top_p = params.top_p
    if params.top_k is not None:
        config.top_k = params.top_k
    if params.num_beams is not None:
        config.num_beams = params.num_beams
    if params.min_tokens is not None:  # seq2seq lengths count the decoder start token
        if family == "seq2seq":
            config.min_length = params.min_tokens + 1
        else:
            config.min_new_tokens = params.min_tokens
    if params.no_repeat_ngram_size is not None:
        config.no_repeat_ngram_size = params.no_repeat_ngram_size
    # A minimum above the maximum would only make transformers warn and stop at the maximum.
    if config.min_length is not None:
        config.min_length = min(config.min_length, max_new_tokens + (1 if family == "seq2seq" else 0))
    if config.min_new_tokens is not None:
        config.min_new_tokens = min(config.min_new_tokens, max_new_tokens)
    # Knobs the chosen mode ignores go back to transformers' neutral values (which it accepts silently).
    if not config.do_sample:
        config.temperature, config.top_p, config.top_k = 1.0, 1.0, 50
    if (config.num_beams or 1) == 1:
        config.early_stopping, config.length_penalty = False, 1.0
    return config


def batch_key(config: GenerationConfig, seed: int | None) -> str | None:
    """Requests with equal keys can share one `generate` call; None means the request runs
    alone. max_new_tokens is left out for greedy/sampling (each row stops at its own limit) but
    kept for beam search, whose length penalty and early stop depend on it. A seeded sampled
    request runs alone so its seed reproduces it whatever else is in the queue."""
    if config.do_sample and seed is not None:
        return None
    fields = config.to_diff_dict()
    fields.pop("transformers_version", None)
    if (config.num_beams or 1) == 1:
        fields.pop("max_new_tokens", None)
    return repr(sorted(fields.items()))
