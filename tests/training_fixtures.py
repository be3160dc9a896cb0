"""Shared helpers for the training tests: a small slice of the bundled data and tiny run configs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from training.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "training" / "data" / "support_dialogues.jsonl"


def small_data(directory: Path, dialogues: int = 60) -> Path:
    """The first `dialogues` bundled dialogues as their own JSONL file."""
    path = directory / "dialogues.jsonl"
    with SAMPLE.open(encoding="utf-8") as f:
        path.write_text("".join(itertools.islice(f, dialogues)), encoding="utf-8")
    return path


def tiny_config_file(directory: Path, family: str = "causal", **sections: dict[str, Any]) -> Path:
    """A run config for a one-layer model that trains in seconds; `sections` update the defaults."""
    raw: dict[str, Any] = {
        "name": f"tiny-{family}",
        "seed": 7,
        "output_dir": str(directory / "model"),
        "run_dir": str(directory / "run"),
        "data": {
            "sources": [{"path": str(small_data(directory)), "format": "jsonl"}],
            "validation_fraction": 0.2,
            "max_response_tokens": 32,
        },
        "model": {
            "scratch": {
                "family": family,
                "vocab_size": 400,
                "layers": 1,
                "hidden": 32,
                "heads": 2,
                "positions": 256,
                "dropout": 0.0,
            }
        },
        "batching": {"max_tokens": 2048},
        "train": {
            "device": "cpu",
            "max_steps": 30,
            "learning_rate": 5e-3,
            "warmup_ratio": 0.0,
            "logging_steps": 5,
            "save_steps": 1000,
        },
        "eval": {"prompts": ["I feel so lonely in the evenings."], "sample_max_new_tokens": 8},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def tiny_config(directory: Path, family: str = "causal", overrides: list[str] = (), **sections: Any) -> RunConfig:  # type: ignore[assignment]
    return load_config(str(tiny_config_file(directory, family, **sections)), list(overrides))
