"""A training run from config to model directory: read, split, tokenize, batch, train, evaluate, export."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoTokenizer, GenerationConfig, PreTrainedModel, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from inference.prompt import Family, PromptBuilder, default_prompt_budget
from training.batching import BatchPlan, padding_fraction
from training.collate import Collator
from training.config import ConfigError, DataConfig, RunConfig
from training.device import describe, resolve_device, resolve_precision, trackers
from training.evaluation import sample_replies
from training.examples import Example, add_distractors, build_examples, fit_to_block, is_validation
from training.export import check_output_dir, export, generation_config
from training.modeling import build_model, count_parameters, load_tokenizer, new_tokenizer
from training.readers import Dialogue, GapSplits, Malformed, TelegramOptions, read_dialogues
from training.trainer import JsonlMetrics, ResponseTrainer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceReport:
    path: str
    format: str
    dialogues: int
    skipped: int
    replies: int | None = None  # Telegram: replies of `me`, and those a pause over telegram.gap split off
    split_off: int | None = None


@dataclass
class Prepared:
    """Everything a run needs before the first step; also what --dry-run reports on."""

    config: RunConfig
    args: TrainingArguments
    family: Family
    tokenizer: Any
    model: PreTrainedModel
    builder: PromptBuilder
    train: list[Example]
    validation: list[Example]
    train_plan: BatchPlan
    eval_plan: BatchPlan
    collator: Collator
    sources: list[SourceReport]
    generation: GenerationConfig


def read_data(data: DataConfig, seed: int) -> tuple[list[Dialogue], list[Dialogue], list[SourceReport]]:
    """All sources, streamed, split into train and validation dialogues."""
    train: list[Dialogue] = []
    validation: list[Dialogue] = []
    reports = []
    for source in data.sources:
        malformed = Malformed(skip=data.skip_malformed)
        telegram = TelegramOptions(source.telegram.me, source.telegram.gap, tuple(source.telegram.drop_senders))
        splits = GapSplits()
        count = 0
        stream = read_dialogues(source.path, source.format, malformed, tuple(source.persona), telegram, splits)
        for dialogue in tqdm(stream, desc=f"reading {source.path.name}", unit=" dialogues", leave=False):
            (validation if is_validation(dialogue, data.validation_fraction, seed) else train).append(dialogue)
            count += 1
        gap = (splits.replies, splits.split_off) if splits.gap is not None else (None, None)
        reports.append(SourceReport(str(source.path), source.format, count, malformed.skipped, *gap))
    if not train:
        raise ValueError("no training dialogues: the sources are empty or every dialogue went to validation")
    return train, validation, reports


def training_arguments(config: RunConfig) -> TrainingArguments:
    t = config.train
    device = resolve_device(t.device)
    precision = resolve_precision(t.precision, device)
    return TrainingArguments(
        output_dir=str(config.run_dir / "checkpoints"),
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        label_smoothing_factor=t.label_smoothing,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if t.eval_steps else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        report_to=trackers(),
        ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        dataloader_num_workers=t.dataloader_workers,
        remove_unused_columns=False,
        torch_compile=t.torch_compile,
        disable_tqdm=False,
        ddp_find_unused_parameters=False,
    )


def _tokenizer(config: RunConfig, train: list[Dialogue], args: TrainingArguments, resume: bool) -> Any:
    """Fine-tuning: the base model's tokenizer. New model: trained on the training text by the main
    process and saved in the run folder, where the other DDP ranks (and a resumed run) load it."""
    if config.model.scratch is None:
        return load_tokenizer(config.model.name_or_path)  # type: ignore[arg-type]
    saved = config.run_dir / "tokenizer"
    with args.main_process_first(desc="tokenizer"):
        if args.process_index == 0 and not (resume and (saved / "tokenizer_config.json").exists()):
            texts = (text for d in train for text in (*d.persona, *(t.content for t in d.turns)))
            new_tokenizer(config.model.scratch, texts).save_pretrained(saved)
        return AutoTokenizer.from_pretrained(saved)


def _examples(
    dialogues: list[Dialogue], builder: PromptBuilder, config: RunConfig, family: Family, seed: int, split: str
) -> list[Example]:
    examples = build_examples(
        tqdm(dialogues, desc="tokenizing", unit=" dialogues", leave=False),
        builder,
        config.data.context_turns,
        config.data.max_response_tokens,
    )
    if config.model.distractor.enabled:
        examples = add_distractors(examples, config.model.distractor.num_candidates, seed, split)
    if config.batching.mode == "static":
        examples = fit_to_block(examples, family, config.batching.block_size, config.batching.overflow)
    return examples


def _check_window(model_config: Any, family: Family, prompt: int, response: int) -> None:
    positions = getattr(model_config, "max_position_embeddings", None) or model_config.n_positions
    longest = prompt + response if family == "causal" else max(prompt, response)
    if longest > positions:
        raise ConfigError(
            f"data.max_prompt_tokens ({prompt}) and data.max_response_tokens ({response}) "
            f"do not fit the model's {positions} positions"
        )


def prepare(config: RunConfig, resume: bool = False) -> Prepared:
    """Read and tokenize the data and build the model, tokenizer and batch plans."""
    check_output_dir(config.output_dir, [config.run_dir, *(source.path for source in config.data.sources)])
    args = training_arguments(config)
    set_seed(config.seed)
    train_dialogues, val_dialogues, sources = read_data(config.data, config.seed)
    tokenizer = _tokenizer(config, train_dialogues, args, resume)
    set_seed(config.seed)
    model, family = build_model(config.model, tokenizer)
    budget = config.data.max_prompt_tokens or default_prompt_budget(family, model.config)
    _check_window(model.config, family, budget, config.data.max_response_tokens)
    builder = PromptBuilder(tokenizer, family, budget)
    train = _examples(train_dialogues, builder, config, family, config.seed, "training")
    validation = _examples(val_dialogues, builder, config, family, config.seed + 1, "validation")
    if not train:  # dialogues guarantee examples, so static mode's fit_to_block dropped them all
        raise ValueError("no training example fits batching.block_size: raise it, or set batching.overflow=truncate")
    if not validation:
        raise ValueError("no validation examples: raise data.validation_fraction or add data")
    rows = config.model.distractor.num_candidates if config.model.distractor.enabled else 1
    train_plan = BatchPlan([e.lengths(family) for e in train], config.batching, rows=rows, seed=config.seed)
    eval_plan = BatchPlan(
        [e.lengths(family) for e in validation], config.batching, rows=rows, seed=config.seed, train=False
    )
    collator = Collator(family, tokenizer.pad_token_id, train_plan.multiple, distractors=rows > 1)
    # Only the Trainer's samples/s log line reads this: report the plan's mean batch size there.
    args.per_device_train_batch_size = max(1, round(len(train) / len(train_plan)))
    generation = generation_config(family, model, tokenizer, config.eval.generation)  # fail now, not after training
    return Prepared(
        config,
        args,
        family,
        tokenizer,
        model,
        builder,
        train,
        validation,
        train_plan,
        eval_plan,
        collator,
        sources,
        generation,
    )


def plan_text(p: Prepared) -> str:
    """What a run will do, for --dry-run."""
    c, b = p.config, p.config.batching
    tokens = sum(sum(e.lengths(p.family)) for e in p.train)
    response_tokens = sum(len(e.response) for e in p.train)
    per_step = c.train.gradient_accumulation_steps * p.args.world_size
    epochs = c.train.max_steps * per_step / max(len(p.train_plan), 1)
    start = (
        f"fine-tune {c.model.name_or_path}"
        if c.model.name_or_path
        else (
            f"new {p.family} model, {c.model.scratch.layers} layers x {c.model.scratch.hidden}, "  # type: ignore[union-attr]
            f"BPE vocabulary {len(p.tokenizer)} trained on the data"
        )
    )
    budget = f"<= {b.max_tokens} padded tokens" if b.mode == "token_budget" else f"batch size {b.batch_size}"
    lines = [f"plan for run {c.name!r}"]
    lines += [
        f"  data: {s.path} ({s.format}): {s.dialogues} dialogues, {s.skipped} malformed skipped"
        + (
            f", {s.split_off} of {s.replies} replies open a conversation after a pause over telegram.gap (not learned)"
            if s.replies is not None
            else ""
        )
        for s in p.sources
    ]
    lines += [
        f"  examples: {len(p.train)} train / {len(p.validation)} validation "
        f"(context {c.data.context_turns} turns + persona, prompt <= {p.builder.max_prompt_tokens} tokens, "
        f"reply <= {c.data.max_response_tokens})",
        f"  tokens: {tokens:,} per epoch, {response_tokens:,} of them response tokens (the loss)",
        f"  model: {start}; {count_parameters(p.model):,} parameters",
        f"  batching: {b.mode}, {budget}, pad to multiple of {p.train_plan.multiple}: "
        f"{len(p.train_plan)} batches per epoch, {padding_fraction(p.train_plan):.1%} padding",
        f"  schedule: {c.train.max_steps} steps x {per_step} batches = {epochs:.1f} epochs; lr {c.train.learning_rate} "
        f"{c.train.lr_scheduler}, warmup {c.train.warmup_ratio:.0%}, label smoothing {c.train.label_smoothing}",
        f"  device: {p.args.device} ({'bf16' if p.args.bf16 else 'fp16' if p.args.fp16 else 'fp32'}), "
        f"{p.args.world_size} process(es)",
        f"  writes: {c.output_dir} (model), {c.run_dir} (checkpoints, metrics.jsonl, samples)",
    ]
    return "\n".join(lines)


def make_trainer(p: Prepared, metrics_log: Path | None) -> ResponseTrainer:
    """The pipeline's trainer; `metrics_log` is the JSONL file every logged dict is appended to."""
    distractor = p.config.model.distractor
    return ResponseTrainer(
        model=p.model,
        args=p.args,
        train_dataset=p.train,
        eval_dataset=p.validation,
        data_collator=p.collator,
        processing_class=p.tokenizer,
        callbacks=[JsonlMetrics(metrics_log)] if metrics_log else [],
        train_plan=p.train_plan,
        eval_plan=p.eval_plan,
        shift_labels=p.family == "causal",
        mc_weight=distractor.loss_weight if distractor.enabled else None,
    )


def last_checkpoint(run_dir: Path) -> str:
    """The checkpoint --resume continues from, found before the data are read."""
    folder = run_dir / "checkpoints"
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        raise ValueError(f"--resume: no checkpoint in {folder} yet; run without --resume to start")
    return last


def run(config: RunConfig, resume: bool = False) -> dict[str, Any]:
    """Train and export; returns the metrics written beside the model (on every rank; only the
    main process writes files)."""
    checkpoint = last_checkpoint(config.run_dir) if resume else None
    p = prepare(config, resume)
    log.info("%s", plan_text(p))
    trainer = make_trainer(p, config.run_dir / "metrics.jsonl")
    initial = trainer.evaluate()
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    final = trainer.evaluate()
    device = resolve_device(config.train.device)
    metrics = {
        "name": config.name,
        "family": p.family,
        "base": config.model.name_or_path,
        "parameters": count_parameters(p.model),
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch or 0.0,
        "train_loss": result.training_loss,
        "initial": initial,
        "final": final,
        "train_seconds": seconds,
        "device": device,
        "precision": resolve_precision(config.train.precision, device),
        "hardware": describe(device),
        "world_size": p.args.world_size,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "batching": {**config.batching.model_dump(), "padding_fraction": padding_fraction(p.train_plan)},
        "data": {
            "sources": [asdict(s) for s in p.sources],
            "train_examples": len(p.train),
            "validation_examples": len(p.validation),
            "context_turns": config.data.context_turns,
        },
    }
    if trainer.is_world_process_zero():
        samples = sample_replies(
            p.model,
            p.tokenizer,
            p.builder,
            config.eval.persona,
            config.eval.prompts,
            p.generation,
            config.eval.sample_max_new_tokens,
        )
        _write_samples(config.run_dir, samples)
        export(
            p.model,
            p.tokenizer,
            p.family,
            config.output_dir,
            metrics,
            samples,
            p.generation,
            p.builder.max_prompt_tokens,
        )
    return metrics


def _write_samples(run_dir: Path, samples: list[dict[str, str]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples.jsonl").write_text(
        "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8"
    )
