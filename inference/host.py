"""Which processor a benchmark ran on, printed beside its figures.

The benches run on shared virtual machines whose host processor can change from one day to the
next, and "AMD EPYC" alone does not say which generation: one host did oneDNN's fp32 matrix
products at ~250 GFLOPS per core (AVX-512 on full-width units), another at a fraction of that,
and the same command's figures moved by half. The family and model numbers tell them apart.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The vector extensions that decide how fast the models' matrix products run.
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "asimd", "sve", "bf16")


@dataclass(frozen=True, slots=True)
class Host:
    processor: str  # e.g. "AMD EPYC, x86 family 26 model 2"
    cpus: int  # usable by this process
    features: tuple[str, ...]

    def describe(self) -> str:
        """One line for a bench's report."""
        features = " ".join(self.features) or "no vector extensions of note"
        return f"{self.processor}; {self.cpus} CPUs; {features}"


def this_host(cpuinfo: Path = CPUINFO) -> Host:
    """The processor from /proc/cpuinfo (Linux), else what `platform` knows."""
    fields = _first_processor(cpuinfo)
    name = fields.get("model name") or fields.get("Hardware") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        name = f"{name}, x86 family {fields['cpu family']} model {fields.get('model', '?')}"
    elif "CPU part" in fields:  # ARM: implementer and part identify the core
        name = f"{name}, ARM implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Host(name, cpus, tuple(f for f in FEATURES if f in flags))


def _first_processor(cpuinfo: Path) -> dict[str, str]:
    """The `key: value` lines of the first processor's block (all processors of a VM are alike)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields
