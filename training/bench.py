"""`supportbot bench train`: what token-budget batching buys, on the same data and model in one run.

Throughput — non-padding tokens per second of training steps (forward, backward, AdamW) with
  token-budget batches vs fixed-size batches padded to the longest and padded to a 128 block, the
  fixed size chosen so that an epoch has at most as many batches as with the token budget (at least
  as many examples per step), each variant starting from the same weights.
Quality — the untrained model's validation perplexity, then a plain reference (HF Trainer, default
  padding collator, fixed batches of that size) and the pipeline (ResponseTrainer, its batch plan)
  from the same weights: validation loss after the same number of steps and the training time of
  each, and the steps and time the pipeline needs to reach the reference's validation loss.
The machine is shared: the load average is printed beside the figures.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback

from inference.host import Host, this_host
from training.batching import BatchPlan, padding_fraction
from training.collate import Collator
from training.config import RunConfig
from training.evaluation import loss_metrics, response_nll
from training.examples import Example, fit_to_block
from training.pipeline import Prepared, make_trainer, prepare, training_arguments
from training.trainer import ResponseTrainer

WARMUP_STEPS = 2
ROUND_STEPS = 5
BLOCK = 128


def _variants(p: Prepared) -> dict[str, tuple[list[Example], BatchPlan]]:
    """The three batchings over one example set, with (about) equal batch counts per epoch."""
    budget = (
        p.train_plan
        if p.config.batching.mode == "token_budget"
        else BatchPlan(
            [e.lengths(p.family) for e in p.train],
            p.config.batching.model_copy(update={"mode": "token_budget"}),
            seed=p.config.seed,
        )
    )
    size = math.ceil(len(p.train) / len(budget))  # no more batches per epoch than the budget makes
    fixed = p.config.batching.model_copy(update={"mode": "fixed", "batch_size": size})
    static = p.config.batching.model_copy(
        update={
            "mode": "static",
            "batch_size": size,
            "block_size": BLOCK,
            "pad_to_multiple_of": BLOCK,
            "overflow": "truncate",
        }
    )
    blocked = fit_to_block(p.train, p.family, BLOCK, "truncate")
    return {
        "token_budget": (p.train, budget),
        "fixed_longest": (p.train, BatchPlan([e.lengths(p.family) for e in p.train], fixed, seed=p.config.seed)),
        f"fixed_{BLOCK}": (blocked, BatchPlan([e.lengths(p.family) for e in blocked], static, seed=p.config.seed)),
    }


def _real_tokens(batch: dict[str, torch.Tensor], seq2seq: bool) -> int:
    real = int(batch["attention_mask"].sum())
    return real + int((batch["labels"] != -100).sum()) if seq2seq else real


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _throughput(
    p: Prepared, start: dict[str, torch.Tensor], variants: dict[str, tuple[list[Example], BatchPlan]], steps: int
) -> dict[str, dict[str, Any]]:
    """Timed training steps of every variant, interleaved in rounds of ROUND_STEPS so that a change
    in the load of a shared machine affects all variants alike."""
    model = p.model.to(p.args.device)
    model.load_state_dict(start)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.config.train.learning_rate)
    batches = {name: itertools.cycle(list(plan)) for name, (_, plan) in variants.items()}
    collate = {
        name: Collator(p.family, p.tokenizer.pad_token_id, plan.multiple) for name, (_, plan) in variants.items()
    }
    tokens = dict.fromkeys(variants, 0)
    seconds = dict.fromkeys(variants, 0.0)

    def step(name: str) -> int:
        examples = variants[name][0]
        batch = {k: v.to(p.args.device) for k, v in collate[name]([examples[j] for j in next(batches[name])]).items()}
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return _real_tokens(batch, p.family == "seq2seq")

    for name in variants:
        for _ in range(WARMUP_STEPS):
            step(name)
    for _ in range(max(1, steps // ROUND_STEPS)):
        for name in variants:
            _sync(p.args.device)
            began = time.perf_counter()
            for _ in range(ROUND_STEPS):
                tokens[name] += step(name)
            _sync(p.args.device)
            seconds[name] += time.perf_counter() - began
    return {
        name: {
            "tokens_per_s": tokens[name] / seconds[name],
            "padding_fraction": padding_fraction(plan),
            "batches_per_epoch": len(plan),
            "examples": len(examples),
            "seconds": seconds[name],
        }
        for name, (examples, plan) in variants.items()
    }


def _val_loss(p: Prepared) -> dict[str, float]:
    batches = (
        {k: v.to(p.args.device) for k, v in p.collator([p.validation[i] for i in b]).items()} for b in p.eval_plan
    )
    return loss_metrics(*response_nll(p.model, batches, p.family == "causal"))


class _Trace(TrainerCallback):
    """Records (step, training seconds without evaluation, validation loss) at every evaluation, and
    stops once the run is past `steps` and has reached `target`."""

    def __init__(self, trainer: ResponseTrainer, steps: int, target: float) -> None:
        self.trainer, self.steps, self.target = trainer, steps, target
        self.points: list[dict[str, float]] = []
        self.began = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.began = time.perf_counter()

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        seconds = time.perf_counter() - self.began - self.trainer.eval_seconds
        self.points.append({"step": state.global_step, "seconds": seconds, **(metrics or {})})
        if state.global_step >= self.steps and any(p["eval_loss"] <= self.target for p in self.points):
            control.should_training_stop = True


def _quality(p: Prepared, start: dict[str, torch.Tensor], steps: int, batch_size: int) -> dict[str, Any]:
    """Reference first (its loss is the target), then the pipeline with an evaluation every tenth of
    `steps`, for up to twice as many steps. Both use a constant learning rate after warmup, so a
    step means the same in a longer run; evaluation time is not counted as training time."""
    p.model.load_state_dict(start)
    results: dict[str, Any] = {"steps": steps, "untrained": _val_loss(p)}
    every = max(1, steps // 10)
    with tempfile.TemporaryDirectory() as tmp:
        train = p.config.train.model_copy(
            update={
                "max_steps": steps,
                "eval_steps": None,
                "save_steps": 10 * steps,
                "lr_scheduler": "constant_with_warmup",
            }
        )
        args = replace(
            training_arguments(p.config.model_copy(update={"run_dir": Path(tmp), "train": train})),
            per_device_train_batch_size=batch_size,
            report_to=[],
            disable_tqdm=True,
        )
        rows = [
            dict(zip(("input_ids", "labels"), e.causal(), strict=True))
            if p.family == "causal"
            else {"input_ids": list(e.prompt), "labels": list(e.response)}
            for e in p.train
        ]
        reference = Trainer(
            model=p.model,
            args=args,
            train_dataset=rows,
            data_collator=DataCollatorForSeq2Seq(p.tokenizer, p.model),
            processing_class=p.tokenizer,
        )
        began = time.perf_counter()
        reference.train()
        results["reference"] = {"seconds": time.perf_counter() - began, **_val_loss(p)}

        p.model.load_state_dict(start)
        args = replace(args, max_steps=2 * steps, eval_strategy="steps", eval_steps=every)
        pipeline = make_trainer(replace(p, args=args), metrics_log=None)
        trace = _Trace(pipeline, steps, results["reference"]["eval_loss"])
        pipeline.add_callback(trace)
        pipeline.train()
    at_steps = next(point for point in trace.points if point["step"] == steps)
    reached = next((point for point in trace.points if point["eval_loss"] <= trace.target), None)
    results["pipeline"] = {
        "seconds": at_steps["seconds"],
        "eval_loss": at_steps["eval_loss"],
        "eval_perplexity": at_steps["eval_perplexity"],
    }
    results["pipeline_to_reference_loss"] = (
        {"step": reached["step"], "seconds": reached["seconds"], "eval_loss": reached["eval_loss"]} if reached else None
    )
    return results


def run_bench(config: RunConfig, steps: int, quality_steps: int) -> dict[str, Any]:
    """All figures of `supportbot bench train` as one dict."""
    torch.manual_seed(config.seed)
    load_before = os.getloadavg()[0]
    p = prepare(config)
    start = copy.deepcopy(p.model.state_dict())
    variants = _variants(p)
    throughput = _throughput(p, start, variants, steps)
    base = throughput["token_budget"]["tokens_per_s"]
    for figures in throughput.values():
        figures["token_budget_speedup"] = base / figures["tokens_per_s"]
    result: dict[str, Any] = {
        "config": config.name,
        "family": p.family,
        "device": str(p.args.device),
        "threads": torch.get_num_threads(),
        "max_tokens": config.batching.max_tokens,
        "fixed_batch_size": variants["fixed_longest"][1].config.batch_size,
        "throughput": throughput,
    }
    if quality_steps:
        result["quality"] = _quality(p, start, quality_steps, result["fixed_batch_size"])
    result["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    result["host"] = asdict(this_host())
    return result


def report(result: dict[str, Any]) -> str:
    lines = [
        f"bench train: {result['config']} ({result['family']}) on {result['device']}, {result['threads']} threads, "
        f"token budget {result['max_tokens']}, fixed batch size {result['fixed_batch_size']}"
    ]
    for name, f in result["throughput"].items():
        lines.append(
            f"  {name:<14} {f['tokens_per_s']:>9,.0f} non-pad tokens/s  padding {f['padding_fraction']:6.1%}  "
            f"token budget is x{f['token_budget_speedup']:.2f}"
        )
    if q := result.get("quality"):
        lines.append(f"  quality over {q['steps']} steps: untrained val ppl {q['untrained']['eval_perplexity']:.1f}")
        for name in ("reference", "pipeline"):
            lines.append(
                f"    {name:<9} val loss {q[name]['eval_loss']:.3f} (ppl {q[name]['eval_perplexity']:.1f}) "
                f"after {q['steps']} steps, {q[name]['seconds']:.1f} s of training"
            )
        reached = q["pipeline_to_reference_loss"]
        lines.append(
            f"    pipeline reached the reference's loss after {reached['step']} steps, {reached['seconds']:.1f} s"
            if reached
            else f"    pipeline did not reach the reference's loss within {2 * q['steps']} steps"
        )
    load = result["load_average"]
    lines.append(f"  load average (1 min): {load['before']:.2f} before, {load['after']:.2f} after")
    lines.append(f"  host: {Host(**result['host']).describe()}")
    return "\n".join(lines)
