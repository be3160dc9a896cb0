"""`supportbot train` and `supportbot bench train` (registered by bot/cli.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)


def register(commands: Any, bench: Any) -> None:
    """Add the training commands to the `supportbot` command tree."""
    train = commands.add_parser(
        "train",
        help="train or fine-tune a model from a run config",
        description="Train or fine-tune a model from a YAML/TOML run config; any key can be overridden as "
        "key.path=value (e.g. train.max_steps=50 data.sources.0.path=chats/result.json). "
        "Multi-process: torchrun --standalone --nproc-per-node N --no-python supportbot train ...",
    )
    train.add_argument(
        "--config",
        required=True,
        help="config file, or a bundled name: demo, blenderbot-400m-empathetic, dialogpt-medium-telegram, gaudi",
    )
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    train.add_argument(
        "--dry-run", action="store_true", help="print the plan (examples, tokens, batches, steps) and stop"
    )
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    train.set_defaults(func=_train)

    bench_train = bench.add_parser("train", help="token-budget batching vs fixed batches; pipeline vs plain Trainer")
    bench_train.add_argument(
        "--config", default="demo", help="run config whose data and model are measured (default: demo)"
    )
    bench_train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    bench_train.add_argument("--steps", type=int, default=60, help="timed training steps per batching variant")
    bench_train.add_argument(
        "--quality-steps", type=int, default=150, help="steps of the pipeline-vs-reference quality run (0 skips it)"
    )
    bench_train.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    bench_train.set_defaults(func=_bench)


def _errors() -> tuple[type[BaseException], ...]:
    """What a user can fix (config, data, device), reported in one line; anything else keeps its traceback.
    ConfigError and DataFormatError are ValueErrors, as are the readers' and batch plans' complaints."""
    from training.device import DeviceUnavailable

    return ValueError, FileNotFoundError, DeviceUnavailable


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _train(args: argparse.Namespace) -> int:
    _setup_logging()
    from training.config import load_config
    from training.pipeline import plan_text, prepare, run

    try:
        config = load_config(args.config, args.overrides)
        if args.dry_run:
            print(plan_text(prepare(config)))
            return 0
        metrics = run(config, resume=args.resume)
    except _errors() as exc:
        print(f"supportbot train: error: {exc}", file=sys.stderr)
        return 2
    final = metrics["final"]
    if int(os.environ.get("RANK", "0")) == 0:  # one line per run, not per torchrun process
        print(
            f"model written to {config.output_dir}: validation loss {final['eval_loss']:.3f}, "
            f"perplexity {final['eval_perplexity']:.1f} (untrained {metrics['initial']['eval_perplexity']:.1f}), "
            f"{metrics['steps']} steps in {metrics['train_seconds']:.0f} s"
        )
    return 0


def _bench(args: argparse.Namespace) -> int:
    _setup_logging()
    from training.bench import report, run_bench
    from training.config import load_config

    try:
        config = load_config(args.config, args.overrides)
        result = run_bench(config, args.steps, args.quality_steps)
    except _errors() as exc:
        print(f"supportbot bench train: error: {exc}", file=sys.stderr)
        return 2
    print(report(result))
    if args.json:
        print(json.dumps(result))
    return 0
