"""Fixtures for the inference tests: tiny models of both families saved to disk, a running worker.

Import the fixtures you use into the test module (`from tests.inference_fixtures import ...`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from inference.engine import Engine, load_model
from inference.synthetic import save_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAMILY_SPECS = {"causal": "tiny-causal", "seq2seq": "tiny-seq2seq"}


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny DialoGPT-style and a tiny BlenderBot-style model, written with save_pretrained."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: save_model(spec, root / family) for family, spec in FAMILY_SPECS.items()}


@pytest.fixture(scope="session")
def tiny_engines(tiny_model_dirs: dict[str, Path]) -> dict[str, Engine]:
    """Both tiny models loaded back through from_pretrained (shared: tests must not mutate them)."""
    return {family: load_model(str(path)) for family, path in tiny_model_dirs.items()}


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free local port, as the worker does; yields its base URL."""
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class Gate:
    """Holds every generate call of an engine until opened, so tests can fill the queue."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.opened = threading.Event()
        self.entered = threading.Event()
        self._generate: Callable = engine.generate

    def __enter__(self) -> Gate:
        def held(*args, **kwargs):
            self.entered.set()
            self.opened.wait(timeout=30)
            return self._generate(*args, **kwargs)

        self.engine.generate = held  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self.opened.set()
        del self.engine.generate
