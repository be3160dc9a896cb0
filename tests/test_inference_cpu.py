"""OpenMP workers: a thread done with multi-threaded torch work can free them (see inference.cpu)."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from inference.cpu import release_openmp_workers

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="counts threads in /proc")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _work_then_release() -> tuple[int, int, bool, int]:
    """Threads before, while this thread's 2-thread OpenMP team idles, released?, after."""
    before = _threads()
    torch.set_num_threads(2)
    torch.ones(2**22).exp()  # one parallel region (at::parallel_for): the team's worker starts
    idle = _threads()
    released = release_openmp_workers()
    deadline = time.monotonic() + 5
    while _threads() > before and time.monotonic() < deadline:  # the worker exits just after the call
        time.sleep(0.01)
    return before, idle, released, _threads()


def test_a_thread_frees_its_idle_openmp_workers() -> None:
    if torch.__config__.parallel_info().find("OpenMP") < 0:
        pytest.skip("torch here does not parallelise with OpenMP")
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_work_then_release).result()  # torch's first parallel work also starts a thread of its own
        before, idle, released, after = pool.submit(_work_then_release).result()
    assert idle == before + 1  # the worker outlives the work...
    assert released and after == before  # ...until the thread frees it
