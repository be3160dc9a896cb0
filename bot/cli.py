"""The `supportbot` command: one entry point whose subcommands each live beside the code they run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# Each registrar adds its subcommands: register(commands, bench) where `commands` is the
# top-level subparsers object and `bench` the subparsers of `supportbot bench`.
# Handlers are set with parser.set_defaults(func=handler); handler(args) -> exit code.
Registrar = Callable[[argparse._SubParsersAction, argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    from bot import commands, crisis_bench
    from bot.channels import telegram_bench, twilio_bench
    from bot.crisis import commands as crisis_commands
    from inference import commands as inference_commands
    from training import commands as training_commands

    return [
        commands.register,
        training_commands.register,
        inference_commands.register,
        twilio_bench.register,
        telegram_bench.register,
        crisis_commands.register,
        crisis_bench.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree, assembled from each package's registrar."""
    parser = argparse.ArgumentParser(prog="supportbot", description="An empathetic support chatbot service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench_parser = commands.add_parser("bench", help="benchmarks: inference, bot, train, crisis")
    bench = bench_parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for register in _registrars():
        register(commands, bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
