"""The model engine: loads a chat model and runs it, a step at a time for a running batch or one
`generate` call per static batch.

Greedy and sampled requests on GPT-2 (DialoGPT) and BlenderBot models are decoded step by step
(`join`, `step`): the engine runs the decoder itself over a `RunningBatch` whose rows join and
leave between steps (`inference.batch`). A newcomer is prefilled alone, without padding (its
prompt's key/value states, or its encoder output as cross-attention keys/values), then decodes
one token per step with everyone else; a row's logits pass through the same logits processors
`generate` would build for it alone, so a greedy reply is the same token ids as alone.

Beam search, seeded sampling and other architectures run as one `generate` call per batch, where
padding is what makes a batched answer equal the lone one. Causal models (DialoGPT) are padded
on the left so every row's newest token sits at the end, with an explicit attention mask (their
pad and turn separator are both EOS, so a mask inferred from pad ids would hide the turn
breaks) and explicit position ids that start at 0 on each row's first real token. Encoder-decoder
models (BlenderBot) learn absolute positions from index 0, so their encoder input is padded on
the right.

On CPU, a causal batch's prompts are first run one by one (all but their last token), and their
key/value states laid side by side, left-padded, in one preallocated cache; `generate` then
starts from there. A padded batch would spend a third of its prefill on padding, and its large
activations fall out of the CPU caches; beam search would also run each prompt once per beam.
Run alone, a prompt can also start from the stored states of its conversation's last prompt
(`inference.prefix`), so a follow-up turn computes only its new tokens; the step path's
prefill does the same.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    StaticCache,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation.streamers import BaseStreamer

from inference.api import ChatMessage, GenerationParams
from inference.batch import CrossAttentionCache, Row, RunningBatch, SelfAttentionCache
from inference.cpu import (
    fuse_gelu,
    pack_linears,
    packing_available,
    quantize_int8,
    release_openmp_workers,
    use_cpu_attention,
)
from inference.device import pick_device, pick_dtype
from inference.generation import apply_family_defaults, request_config
from inference.prefix import PrefixCache, States
from inference.prompt import Family, PromptBuilder, default_prompt_budget, family_of, split_messages

log = logging.getLogger(__name__)

RANDOM_PREFIX = "random:"
DEFAULT_PREFIX_CACHE_MB = 512.0  # key/value states of recent prompts (CPU causal models), see inference.prefix
HPU_PAD_MULTIPLE = 32  # Gaudi compiles a graph per input shape; bucketing lengths bounds their number
STEPPED_MODELS = ("gpt2", "blenderbot")  # architectures whose decoder `step` runs (model_type)

TokenCallback = Callable[[int, int], None]  # (row, token id), called from the generation thread


class ModelLoadError(Exception):
    """The model or its tokenizer could not be loaded; the message names what was asked for."""


@dataclass(frozen=True, slots=True)
class Generated:
    """One row's reply. completion_tokens counts what the model produced, the final EOS included."""

    token_ids: list[int]
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


class Engine:
    """A loaded model with its tokenizer, prompt builder and decoding defaults."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        *,
        name: str,
        prompt_budget: int | None = None,
        prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.family: Family = family_of(model.config)
        self.device = model.device
        config = model.config
        self.max_positions = int(getattr(config, "max_position_embeddings", None) or config.n_positions)
        self.prompts = PromptBuilder(
            tokenizer, self.family, prompt_budget or default_prompt_budget(self.family, config)
        )
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # DialoGPT/GPT-2 ship without one; the mask makes it safe
        self.pad_id: int = tokenizer.pad_token_id
        self.eos_id: int = tokenizer.eos_token_id
        self.generation_config: GenerationConfig = apply_family_defaults(model.generation_config, self.family)
        if self.generation_config.pad_token_id is None:
            self.generation_config.pad_token_id = self.pad_id
        if self.generation_config.eos_token_id is None:
            self.generation_config.eos_token_id = self.eos_id
        # On CPU a preallocated KV cache saves the per-step concatenation that dominates large
        # batches; elsewhere transformers would compile the model for it, once per batch shape.
        self._cache = "static" if self.device.type == "cpu" else None
        self._ragged_prefill = self.device.type == "cpu" and self.family == "causal"
        # Only the per-prompt prefill can start a prompt from stored states.
        self.prefix_cache = (
            PrefixCache(int(prefix_cache_mb * 2**20)) if self._ragged_prefill and prefix_cache_mb > 0 else None
        )
        self._pad_multiple = HPU_PAD_MULTIPLE if self.device.type == "hpu" else 1
        self._generate_extras: dict[str, Any] = (
            dict(lazy_mode=True, hpu_graphs=True) if self.device.type == "hpu" else {}
        )
        # Gaudi wants fixed shapes, which a batch changing every step is not.
        self._stepped = config.model_type in STEPPED_MODELS and self.device.type != "hpu"
        if self.device.type == "cpu":
            use_cpu_attention(model)
        self._global_rng = threading.Lock()

    def prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The model input for a chat, in the shared training/serving format."""
        persona, turns = split_messages(messages)
        return self.prompts.prompt_ids(persona, turns)

    def request(self, params: GenerationParams, prompt_len: int) -> tuple[GenerationConfig, int]:
        """The decoding config for one request and its new-token limit, capped to the model's window."""
        wanted = params.max_tokens or self.generation_config.max_new_tokens or 64
        room = self.max_positions - (prompt_len if self.family == "causal" else 1)
        limit = max(1, min(wanted, room))
        return request_config(self.generation_config, self.family, params, limit), limit

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[list[int]],
        config: GenerationConfig,
        limits: Sequence[int],
        *,
        seed: int | None = None,
        on_token: TokenCallback | None = None,
        abandoned: Callable[[int], bool] | None = None,
    ) -> list[Generated]:
        """Run one `generate` call for rows that share `config`; each row stops at its own limit, or
        as soon as `abandoned(row)` says its caller has gone (not under beam search, whose rows are beams)."""
        inputs = self._pad(prompts)
        start = inputs["input_ids"].shape[1] if self.family == "causal" else 1  # seq2seq: after decoder start
        beams = (config.num_beams or 1) > 1
        config = copy.deepcopy(config)
        # Beam search copies its whole cache every step to follow its beams: the shorter a
        # growing cache is, the less it copies, so only the other modes preallocate.
        static = self._cache == "static" and not beams
        config.cache_implementation = "static" if static else None
        if not beams:
            config.max_new_tokens = max(limits)
        if self._ragged_prefill and start > 1:
            inputs["past_key_values"] = self._prefill(
                prompts, start, config.max_new_tokens, config.num_beams or 1, static
            )
            config.cache_implementation = None
        stopping = StoppingCriteriaList([] if beams else [_RowLimits(start, limits, self.device, abandoned)])
        streamer = _RowStreamer(on_token) if on_token and not beams else None
        with self._sampling(config):
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                **inputs,
                generation_config=config,
                stopping_criteria=stopping,
                streamer=streamer,
                **self._generate_extras,
            )
        rows = output[:, start:].tolist()
        return [self._finish(row, len(prompt), limit) for row, prompt, limit in zip(rows, prompts, limits, strict=True)]

    @torch.inference_mode()
    def generate_plain(
        self, prompt: list[int], config: GenerationConfig, limit: int, seed: int | None = None
    ) -> Generated:
        """One prompt through plain `model.generate` (batch 1, transformers' default cache, none of
        the batching machinery above): the reference that batched serving is measured against."""
        config = copy.deepcopy(config)
        config.max_new_tokens = limit
        ids = torch.tensor([prompt], device=self.device)
        with self._sampling(config):
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config, **self._generate_extras
            )
        start = len(prompt) if self.family == "causal" else 1
        return self._finish(output[0, start:].tolist(), len(prompt), limit)

    def _sampling(self, config: GenerationConfig) -> AbstractContextManager[object]:
        """`generate` samples from torch's global generator: one sampling call at a time, so a seeded
        request gives the same reply whatever runs beside it (steps sample from their batch's own)."""
        return self._global_rng if config.do_sample else nullcontext()

    def steppable(self, config: GenerationConfig) -> bool:
        """Whether a request decoded with `config` can join a running batch (not beam search)."""
        return self._stepped and (config.num_beams or 1) == 1

    def new_batch(self, rows_hint: int = 0) -> RunningBatch:
        """An empty running batch with caches shaped for this model (no caches: nothing steppable),
        laid out for `rows_hint` rows at once (the scheduler's largest batch)."""
        c = self.model.config
        if not self._stepped:
            return RunningBatch(None)
        generator = torch.Generator(self.device)
        generator.seed()
        if self.family == "causal":
            shape = (c.n_layer, c.n_head, c.n_embd // c.n_head)
            own = SelfAttentionCache(*shape, self.model.dtype, self.device, rows_hint=rows_hint)
            return RunningBatch(own, generator=generator)
        shape = (c.decoder_layers, c.decoder_attention_heads, c.d_model // c.decoder_attention_heads)
        return RunningBatch(
            SelfAttentionCache(*shape, self.model.dtype, self.device, rows_hint=rows_hint),
            CrossAttentionCache(
                *shape, self.model.dtype, self.device, max_columns=self.max_positions, rows_hint=rows_hint
            ),
            generator=generator,
        )

    @torch.inference_mode()
    def join(
        self, batch: RunningBatch, prompt: list[int], config: GenerationConfig, limit: int, tag: Any = None
    ) -> Row:
        """Prefill one prompt alone and add it to `batch`. Causal: the whole prompt is run, and the
        next step's output layer turns its last hidden state into the row's first token (beside
        the other rows': one pass over that layer's weights for all); a seq2seq row's decoder
        starts from its start token at the next step, after the encoder."""
        config = copy.deepcopy(config)
        config.max_new_tokens = limit
        encoder_states = hidden = None
        if self.family == "causal":
            past, (states, hidden) = len(prompt), self._prompt_states(prompt, last=True)
            history, start, position = list(prompt), prompt[-1], len(prompt) - 1
        else:
            past, states, position = 0, None, 0
            encoder_states = self._encoder_states(prompt)
            start = config.decoder_start_token_id
            if start is None:
                start = self.model.config.decoder_start_token_id
            history = [start]
        config.max_length = len(history) + limit  # what generate sets; forced-EOS processors read it
        self.model._prepare_special_tokens(config, True, device=self.device)
        processors = self.model._get_logits_processor(
            generation_config=config,
            input_ids_seq_length=len(history),
            encoder_input_ids=torch.tensor([prompt], device=self.device),
            device=self.device,
        )
        row = Row(list(prompt), config, limit, processors, history, start, position, tag)
        if hidden is not None:
            batch.joining.append((row, states, hidden))
        else:
            batch.add(row, states, past, encoder_states)
        return row

    def _encoder_states(self, prompt: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The encoder output of one prompt as every decoder layer's cross-attention keys/values."""
        ids = torch.tensor([prompt], device=self.device)
        hidden = self.model.get_encoder()(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        states = []
        for layer in self.model.get_decoder().layers:
            attention = layer.encoder_attn
            shape = (1, len(prompt), -1, attention.head_dim)
            states.append(
                (
                    attention.k_proj(hidden).view(shape).transpose(1, 2),
                    attention.v_proj(hidden).view(shape).transpose(1, 2),
                )
            )
        return states

    @torch.inference_mode()
    def step(self, batch: RunningBatch) -> list[tuple[Row, int]]:
        """One decoding step: every row of `batch` is fed its next input, every joining row gets
        its first token from its prompt's last hidden state and joins the cache. Returns each
        row with its new token; rows are marked done at EOS or their limit (and stay until removed)."""
        rows, joining = list(batch.rows), batch.joining
        batch.joining = []
        hidden = []
        if rows:
            ids = torch.tensor([[row.next_input] for row in rows], device=self.device)
            positions = torch.tensor([[row.position] for row in rows], device=self.device)
            mask = batch.own.step_mask()
            hidden.append(self._decode(batch, ids, positions, mask))
            batch.own.advance()
        hidden.extend(last for _, _, last in joining)
        logits = self.model.lm_head(torch.cat(hidden))
        if self.family == "seq2seq":
            logits = logits + self.model.final_logits_bias
        for row, states, _ in joining:  # their states end where the step's column was written
            batch.add(row, states, len(row.prompt))
        everyone = rows + [row for row, _, _ in joining]
        made = list(zip(everyone, self._pick(everyone, logits.float(), batch.generator), strict=True))
        for row, token in made:
            self._took(row, token)
        return made

    def _took(self, row: Row, token: int) -> None:
        row.produced.append(token)
        row.history.append(token)
        row.next_input = token
        row.position += 1
        row.done = token == self.eos_id or len(row.produced) >= row.limit

    def _decode(
        self, batch: RunningBatch, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The decoder on one token per row; returns its final hidden states (rows, width)."""
        if self.family == "causal":
            body = self.model.transformer
            hidden = body.wte(ids) + body.wpe(positions)
            for block in body.h:
                hidden = block(hidden, past_key_values=batch.cache, attention_mask=mask, use_cache=True)
            return body.ln_f(hidden)[:, -1]
        decoder = self.model.get_decoder()
        hidden = decoder.embed_tokens(ids) + decoder.embed_positions(ids.shape, 0, position_ids=positions)
        cross = batch.cross.mask()
        for layer in decoder.layers:
            # The encoder states argument only switches cross-attention on; its keys/values are cached.
            hidden = layer(
                hidden, mask, hidden, encoder_attention_mask=cross, past_key_values=batch.cache, use_cache=True
            )
        return decoder.layer_norm(hidden)[:, -1]

    def _pick(self, rows: Sequence[Row], logits: torch.Tensor, generator: torch.Generator | None) -> list[int]:
        """Each row's next token: its processors, then argmax or a sample from the batch's own
        `generator` (one argmax for all rows when none has processors or samples, the common greedy case)."""
        if not any(row.processors or row.config.do_sample for row in rows):
            return logits.argmax(-1).tolist()
        tokens = []
        for index, row in enumerate(rows):
            scores = logits[index : index + 1]
            if row.processors:
                scores = row.processors(torch.tensor([row.history], device=self.device), scores)
            if row.config.do_sample:
                tokens.append(int(torch.multinomial(scores.softmax(-1), 1, generator=generator)))
            else:
                tokens.append(int(scores.argmax(-1)))
        return tokens

    def result(self, row: Row) -> Generated:
        """A finished (or cut short) row's reply."""
        return self._finish(row.produced, len(row.prompt), row.limit)

    def _pad(self, prompts: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(p) for p in prompts)
        width = -(-width // self._pad_multiple) * self._pad_multiple
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            span = slice(width - len(prompt), width) if self.family == "causal" else slice(0, len(prompt))
            ids[row, span] = torch.tensor(prompt, dtype=torch.long)
            mask[row, span] = 1
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self.family == "causal":
            inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        return {key: value.to(self.device) for key, value in inputs.items()}

    def _prefill(self, prompts: Sequence[list[int]], width: int, new_tokens: int, copies: int, static: bool) -> Cache:
        """Every prompt but its last token, run alone, merged into one left-padded cache of
        `width - 1` filled positions (each row repeated `copies` times, for beam search)."""
        past = width - 1
        rows = [self._prompt_states(p[:-1])[0] if len(p) > 1 else None for p in prompts]
        config = self.model.config
        cache = StaticCache(config=config, max_cache_len=width + new_tokens) if static else DynamicCache(config=config)
        template = next(row for row in rows if row is not None)
        for index in range(len(cache.layers)):
            merged = []
            for kind in (0, 1):  # keys, values
                like = template[index][kind]
                parts = [
                    F.pad(row[index][kind], (0, 0, past - (len(p) - 1), 0))
                    if row is not None
                    else like.new_zeros(1, like.shape[1], past, like.shape[3])
                    for row, p in zip(rows, prompts, strict=True)
                ]
                merged.append(torch.cat(parts).repeat_interleave(copies, dim=0))
            cache.update(*merged, index)
        return cache

    def _prompt_states(self, ids: list[int], last: bool = False) -> tuple[States, torch.Tensor | None]:
        """The key/value states of one prompt, computed past its longest cached prefix; with
        `last`, the last token is always run and its final hidden state returned too."""
        known, states = self.prefix_cache.longest(ids) if self.prefix_cache is not None else (0, None)
        if last and states is not None and known == len(ids):
            known -= 1
            states = [(keys[:, :, :known], values[:, :, :known]) for keys, values in states] if known else None
        if states is not None and known == len(ids):
            return states, None
        past = DynamicCache(config=self.model.config) if states else None
        for index, (keys, values) in enumerate(states or []):
            past.update(keys, values, index)
        output = self.model.base_model(
            input_ids=torch.tensor([ids[known:]], device=self.device),
            # nothing is padded; said explicitly because the prompt's turn separator is also the pad token
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.device),
            position_ids=torch.arange(known, len(ids), device=self.device)[None],
            past_key_values=past,
            use_cache=True,
        )
        computed = [(layer.keys, layer.values) for layer in output.past_key_values.layers]
        if self.prefix_cache is not None:
            self.prefix_cache.put(ids, computed)
        return computed, output.last_hidden_state[:, -1] if last else None

    def _finish(self, row: list[int], prompt_tokens: int, limit: int) -> Generated:
        row = row[:limit]
        if self.eos_id in row:
            tokens = row[: row.index(self.eos_id)]
            reason: Literal["stop", "length"] = "stop"
        else:
            tokens, reason = row, "length"
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        produced = len(tokens) + (reason == "stop")
        return Generated(tokens, text, reason, prompt_tokens, produced)


class _RowLimits(StoppingCriteria):
    """Marks each row done at its own new-token limit, so short and long requests share a batch, or
    once its caller has gone."""

    def __init__(
        self, start: int, limits: Sequence[int], device: torch.device, abandoned: Callable[[int], bool] | None
    ) -> None:
        self.start = start
        self.limits = torch.tensor(list(limits), device=device)
        self.abandoned = abandoned

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        done = (input_ids.shape[1] - self.start) >= self.limits
        if self.abandoned is not None:
            gone = [self.abandoned(row) for row in range(len(self.limits))]
            done |= torch.tensor(gone, device=self.limits.device)
        return done


class _RowStreamer(BaseStreamer):
    """Hands each row's new token to a callback as it is decoded (the first put is the prompt)."""

    def __init__(self, on_token: TokenCallback) -> None:
        self.on_token = on_token
        self.seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            self.on_token(row, token)

    def end(self) -> None:
        pass


def load_model(
    model: str,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    int8: bool = False,
    prompt_budget: int | None = None,
    prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB,
) -> Engine:
    """Load a hub id, a local directory (the training pipeline's output included) or a
    `random:<size>` synthetic model; raise ModelLoadError naming `model` when that fails."""
    target = pick_device(device)
    precision = pick_dtype(target, dtype)
    if int8 and target.type != "cpu":
        raise ModelLoadError(f"cannot load model {model!r} with int8: dynamic quantization runs on CPU only")
    if int8 and precision != torch.float32:
        raise ModelLoadError(f"cannot load model {model!r} with int8: it quantizes an fp32 model, not {precision}")
    try:
        network, tokenizer = _load(model, target, precision)
    except Exception as exc:  # every failure below is reported the same way: what, and why
        raise ModelLoadError(f"cannot load model {model!r}: {type(exc).__name__}: {exc}") from exc
    if target.type == "cpu":
        fuse_gelu(network)
        if int8:
            network = quantize_int8(network)
        elif packing_available():
            pack_linears(network)
        release_openmp_workers()  # idle, the loading thread's workers would slow the threads that run the model
    log.info(
        "loaded %s (%s) on %s as %s%s", model, family_of(network.config), target, precision, " int8" if int8 else ""
    )
    return Engine(network, tokenizer, name=model, prompt_budget=prompt_budget, prefix_cache_mb=prefix_cache_mb)


def _looks_like_path(model: str) -> bool:
    """Hub ids are "name" or "org/name"; anything else (absolute, ./, ~, deeper) is a local path."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).exists()


def _load(model: str, device: torch.device, dtype: torch.dtype) -> tuple[PreTrainedModel, Any]:
    if model.startswith(RANDOM_PREFIX):
        from inference.synthetic import build_model

        network, tokenizer = build_model(model[len(RANDOM_PREFIX) :])
        return network.to(device=device, dtype=dtype), tokenizer
    if _looks_like_path(model) and not Path(model).is_dir():
        raise FileNotFoundError("no such model directory")
    if device.type == "hpu":
        from optimum.habana.transformers.modeling_utils import adapt_transformers_to_gaudi

        adapt_transformers_to_gaudi()
    config = AutoConfig.from_pretrained(model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    loader = AutoModelForSeq2SeqLM if family_of(config) == "seq2seq" else AutoModelForCausalLM
    network = loader.from_pretrained(model, config=config, dtype=dtype).to(device)
    if device.type == "hpu":
        from habana_frameworks.torch.hpu import wrap_in_hpu_graph

        network = wrap_in_hpu_graph(network)
    return network, tokenizer
