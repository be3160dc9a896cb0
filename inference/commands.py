"""`supportbot worker` and `supportbot bench inference`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from inference.engine import DEFAULT_PREFIX_CACHE_MB, ModelLoadError, load_model
from inference.schema import Limits


def _count(text: str) -> int:
    """A whole number of 1 or more, for argparse: a bad value is a usage error, not a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="the inference worker (OpenAI-compatible HTTP)")
    _model_options(worker)
    worker.add_argument("--host", default="127.0.0.1")
    worker.add_argument("--port", type=int, default=8000)
    worker.add_argument("--served-model-name", help="the name clients use (default: --model as given)")
    worker.add_argument("--max-queue", type=_count, default=256, help="queued requests before 429 (default 256)")
    defaults = Limits()
    worker.add_argument("--max-request-tokens", type=int, default=defaults.max_tokens, help="cap on max_tokens")
    worker.add_argument("--max-messages", type=int, default=defaults.max_messages)
    worker.add_argument("--max-message-chars", type=int, default=defaults.max_message_chars)
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(func=run_worker)

    inference = bench.add_parser("inference", help="batched serving vs one-at-a-time generate")
    _model_options(inference)
    inference.add_argument("--concurrency", type=_count, required=True, help="conversations talking at once")
    inference.add_argument("--turns", type=int, default=2, help="requests per conversation (default 2)")
    inference.add_argument("--max-tokens", type=int, default=32, help="reply length cap (default 32)")
    inference.add_argument(
        "--decoding",
        choices=["greedy", "beam", "model"],
        default="greedy",
        help="greedy; beam = BlenderBot's recipe (beam 10, min 20, no-repeat 3); model = its defaults",
    )
    inference.add_argument(
        "--via",
        choices=["http", "inprocess"],
        default="http",
        help="through the worker's HTTP API (default) or the scheduler directly",
    )
    inference.add_argument(
        "--baseline-sample",
        type=int,
        default=16,
        help="prompts the sequential baseline runs, spread over all (0 = all; default 16)",
    )
    inference.add_argument(
        "--continuous-batching",
        action="store_true",
        help="also time transformers' generate_batch on the same prompts (causal models)",
    )
    inference.add_argument(
        "--rounds",
        type=_count,
        default=1,
        help="repeat the whole comparison and report the median round (a shared machine's figures drift; default 1)",
    )
    inference.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    inference.set_defaults(func=run_bench)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="hub id, directory, or random:dialogpt-small / random:blenderbot-400m (random weights)",
    )
    parser.add_argument("--device", help="cuda, hpu or cpu (default: the best present)")
    parser.add_argument(
        "--dtype", help="float32, bfloat16 or float16 (default: bf16/fp16 on accelerators, fp32 on CPU)"
    )
    parser.add_argument("--int8", action="store_true", help="int8 dynamic quantization (CPU)")
    parser.add_argument("--prompt-budget", type=int, help="prompt tokens kept (default: per family)")
    parser.add_argument(
        "--prefix-cache-mb",
        type=float,
        default=DEFAULT_PREFIX_CACHE_MB,
        help="memory for recent prompts' key/value states, reused by the next turn"
        f" (causal models on CPU; 0 = off; default {DEFAULT_PREFIX_CACHE_MB:g})",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--max-batch-size", type=_count, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a request waits for batch mates")
    parser.add_argument(
        "--lanes", type=_count, help="batches run side by side, splitting the torch threads evenly (default 1)"
    )
    parser.add_argument(
        "--max-beam-rows", type=_count, help="cap on beam hypotheses per batch (default 40 on CPU, none elsewhere)"
    )


def _load(args: argparse.Namespace):
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return load_model(
            args.model,
            device=args.device,
            dtype=args.dtype,
            int8=args.int8,
            prompt_budget=args.prompt_budget,
            prefix_cache_mb=args.prefix_cache_mb,
        )
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def run_worker(args: argparse.Namespace) -> int:
    from inference.server import create_app
    from inference.server import run_worker as serve

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = _load(args)
    if engine is None:
        return 2
    limits = Limits(
        max_tokens=args.max_request_tokens, max_messages=args.max_messages, max_message_chars=args.max_message_chars
    )
    app = create_app(
        engine,
        model_name=args.served_model_name,
        limits=limits,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_beam_rows=args.max_beam_rows,
        lanes=args.lanes,
    )
    try:
        asyncio.run(serve(app, args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from inference.bench import bench, render

    logging.basicConfig(level=logging.WARNING)
    engine = _load(args)
    if engine is None:
        return 2
    report = bench(
        engine,
        concurrency=args.concurrency,
        turns=args.turns,
        max_tokens=args.max_tokens,
        decoding=args.decoding,
        via=args.via,
        sample=args.baseline_sample,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_beam_rows=args.max_beam_rows,
        continuous=args.continuous_batching,
        lanes=args.lanes,
        rounds=args.rounds,
    )
    print(render(report))
    if args.json:
        print(json.dumps(report))
    return 0
