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
    """Holds every generate call, prefill and decoding step of an engine until opened, so tests can
    fill the queue."""

    HELD = ("generate", "join", "step")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.opened = threading.Event()
        self.entered = threading.Event()

    def __enter__(self) -> Gate:
        for name in self.HELD:
            setattr(self.engine, name, self._hold(getattr(self.engine, name)))
        return self

    def _hold(self, method: Callable) -> Callable:
        def held(*args, **kwargs):
            self.entered.set()
            self.opened.wait(timeout=30)
            return method(*args, **kwargs)

        return held

    def __exit__(self, *exc: object) -> None:
        self.opened.set()
        for name in self.HELD:
            delattr(self.engine, name)
