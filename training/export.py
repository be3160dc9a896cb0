"""Write the model directory the worker and the bot load: weights, tokenizer, generation_config,
metrics.json and a short model card. Written to a side directory and swapped in whole, so a
crash never leaves a directory that looks complete (the Makefile checks for config.json)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import GenerationConfig, PreTrainedModel

from inference.generation import family_defaults
from inference.prompt import PROMPT_BUDGET_KEY, Family
from training.config import ConfigError
from training.modeling import for_serving

SAMPLING_ONLY = ("temperature", "top_p", "top_k")
BEAM_ONLY = ("early_stopping", "length_penalty")


def generation_config(
    family: Family, model: PreTrainedModel, tokenizer: Any, overrides: dict[str, Any]
) -> GenerationConfig:
    """The family's decoding recipe (inference.generation), the run's overrides, and the model's special ids.
    Sampling (beam) settings are left out when the result does not sample (search beams): save_pretrained
    refuses them."""
    values = family_defaults(family) | overrides
    unused = (() if values.get("do_sample") else SAMPLING_ONLY) + (() if values.get("num_beams", 1) > 1 else BEAM_ONLY)
    values = {k: v for k, v in values.items() if k not in unused}
    ids = dict(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=getattr(model.config, "bos_token_id", None),
    )
    if family == "seq2seq":
        ids |= dict(
            decoder_start_token_id=model.config.decoder_start_token_id,
            forced_eos_token_id=getattr(model.config, "forced_eos_token_id", None),
        )
    config = GenerationConfig(**(values | ids))
    config.validate(strict=True)
    return config


def model_card(metrics: dict[str, Any], samples: list[dict[str, str]]) -> str:
    data = "\n".join(
        f"- `{s['path']}` ({s['format']}): {s['dialogues']} dialogues, {s['skipped']} malformed records skipped"
        for s in metrics["data"]["sources"]
    )
    shown = "\n".join(f"- **{s['prompt']}** — {s['reply']}" for s in samples[:5])
    start, end = metrics["initial"], metrics["final"]
    origin = (
        f"fine-tuned from `{metrics['base']}`"
        if metrics["base"]
        else "trained from scratch with a BPE tokenizer trained on its data"
    )
    auto = "AutoModelForSeq2SeqLM" if metrics["family"] == "seq2seq" else "AutoModelForCausalLM"
    m = metrics
    return f"""# {metrics["name"]}

An empathetic support-chat model for supportbot ({metrics["family"]}, {metrics["parameters"]:,} parameters),
{origin}.

## Data
{data}

{metrics["data"]["train_examples"]} training and {metrics["data"]["validation_examples"]} validation examples
(context of {metrics["data"]["context_turns"]} turns plus persona; loss on response tokens only).

## Training
{m["steps"]} steps ({m["epochs"]:.1f} epochs) on {m["hardware"]} ({m["device"]}, {m["precision"]},
{m["world_size"]} process(es)) in {m["train_seconds"]:.0f} s; batching: {m["batching"]["mode"]}.

## Evaluation (validation, response tokens)
| | loss | perplexity |
| --- | --- | --- |
| before training | {start["eval_loss"]:.3f} | {start["eval_perplexity"]:.1f} |
| after training | {end["eval_loss"]:.3f} | {end["eval_perplexity"]:.1f} |

Sample replies (more in the run folder):
{shown}

## Use and limits
Loads with `AutoTokenizer` and `{auto}.from_pretrained`;
decoding defaults are in `generation_config.json`. It is a listener, not a counsellor: supportbot's crisis layer,
not this model, handles risk and hands people to humans.
"""


MODEL_FILES = ("config.json", "metrics.json")  # what every directory export() writes has


def check_output_dir(out: Path, keep: Iterable[Path]) -> None:
    """Refuse, before any training, an output_dir that export() could not write or must not replace:
    it replaces the directory whole, so anything in it other than an earlier model of ours would be lost."""
    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir {out} is a file, not a directory; choose a directory for the model")
    for path in keep:
        path = path.expanduser().resolve()
        if path == out or out in path.parents:
            raise ConfigError(f"output_dir {out} holds {path}, which exporting the model would delete; choose another")
    if out.is_dir() and any(out.iterdir()) and not all((out / name).is_file() for name in MODEL_FILES):
        raise ConfigError(
            f"output_dir {out} is not empty and is not a model directory written by supportbot train "
            "(it would be replaced whole); choose a new or empty directory"
        )
    parent = next(p for p in out.parents if p.exists())  # out.parent, or the ancestor it will be made in
    for directory in (parent, out) if out.exists() else (parent,):
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"output_dir {out} cannot be written: no write permission on {directory}")


def export(
    model: PreTrainedModel,
    tokenizer: Any,
    family: Family,
    out: Path,
    metrics: dict[str, Any],
    samples: list[dict[str, str]],
    generation: GenerationConfig,
    max_prompt_tokens: int,
) -> Path:
    """Write the model directory; the prompt budget goes into config.json, where serving reads it
    (inference.prompt.default_prompt_budget), so the worker cuts prompts as training did."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    serving = for_serving(model)
    serving.generation_config = generation
    setattr(serving.config, PROMPT_BUDGET_KEY, max_prompt_tokens)
    serving.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (partial / "README.md").write_text(model_card(metrics, samples), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out
