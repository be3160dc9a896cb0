"""Who used the machine's CPU during a benchmark phase: the service, its worker processes, a local
PostgreSQL server, the load generator.

On a small machine they all share the cores, so a throughput figure is only readable beside this
split: on the 2-core reference machine the crisis layer's second-look worker, which takes whatever
CPU it can get while checks wait, used up to 0.8 of a core during `bench bot`'s fast phase.
"""

from __future__ import annotations

import os
import time

import psutil

SERVICE, WORKERS, POSTGRES, LOAD = "service", "service's worker processes", "PostgreSQL", "load generator"


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuShare:
    """Cores busy on average, per group of processes, between `start` and `stop`. Processes that
    start in between count from zero; processes that end in between are left out."""

    def __init__(self, load_pid: int | None, postgres: bool) -> None:
        self.load_pid = load_pid
        self.postgres = postgres  # the server runs on this machine: count its processes
        self._started: dict[int, float] = {}
        self._at = 0.0

    def _groups(self) -> dict[psutil.Process, str]:
        me = psutil.Process()
        groups = {me: SERVICE}
        for child in me.children(recursive=True):
            groups[child] = LOAD if child.pid == self.load_pid else WORKERS
        if self.postgres:
            for process in psutil.process_iter(["name"]):
                if process.info["name"] == "postgres":
                    groups[process] = POSTGRES
        return groups

    def _sample(self) -> dict[int, tuple[str, float]]:
        sample = {}
        for process, group in self._groups().items():
            try:
                sample[process.pid] = (group, _cpu_seconds(process))
            except psutil.Error:  # ended meanwhile, or not ours to read
                continue
        return sample

    def start(self) -> None:
        self._started = {pid: seconds for pid, (_group, seconds) in self._sample().items()}
        self._at = time.perf_counter()

    def stop(self) -> dict[str, float]:
        """Cores busy per group since `start` (of `os.cpu_count()`), largest first."""
        elapsed = max(time.perf_counter() - self._at, 1e-9)
        busy: dict[str, float] = {}
        for pid, (group, seconds) in self._sample().items():
            busy[group] = busy.get(group, 0.0) + seconds - self._started.get(pid, 0.0)
        return {group: round(seconds / elapsed, 2) for group, seconds in sorted(busy.items(), key=lambda g: -g[1])}


def describe(cores: dict[str, float]) -> str:
    """One line: "service 0.81, PostgreSQL 0.15, ... (cores busy, of 2)"."""
    shares = ", ".join(f"{group} {busy:.2f}" for group, busy in cores.items())
    return f"{shares} (cores busy, of {os.cpu_count()})"
