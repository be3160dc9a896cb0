"""Where a run trains (cuda, hpu, cpu), in which precision, and how the hardware is described in the card.

HPU runs through transformers' own HPU support (the Intel Gaudi PyTorch bridge, `habana_frameworks`,
registers the "hpu" device; TrainingArguments then places the model on hpu:0 and compiles with
"hpu_backend" when torch_compile is on). optimum-habana's GaudiTrainer is not used: its releases
pin transformers 4.x, which this project does not run on (see training/README.md).
"""

from __future__ import annotations

import importlib.util
import os
import platform
from typing import Literal

import torch
from transformers.utils import is_torch_hpu_available

Device = Literal["cpu", "cuda", "hpu"]
Precision = Literal["fp32", "bf16", "fp16"]


class DeviceUnavailable(RuntimeError):
    """The config asks for a device or precision this machine does not have."""


def resolve_device(wanted: str) -> Device:
    if wanted in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    if wanted in ("auto", "hpu") and is_torch_hpu_available():
        return "hpu"
    if wanted in ("cuda", "hpu"):
        hint = (
            "install the Intel Gaudi software stack (habana_frameworks)"
            if wanted == "hpu"
            else "install a CUDA build of torch on a machine with an NVIDIA GPU"
        )
        raise DeviceUnavailable(f"train.device={wanted} but no {wanted} device is available: {hint}")
    return "cpu"


def resolve_precision(wanted: str, device: Device) -> Precision:
    """auto: bf16 where the device has it (Gaudi, Ampere+ GPUs), fp16 on older GPUs, fp32 on CPU."""
    if wanted != "auto":
        if wanted != "fp32" and device == "cpu":
            raise DeviceUnavailable(f"train.precision={wanted} is for cuda/hpu; use fp32 on cpu")
        return wanted  # type: ignore[return-value]
    if device == "hpu" or (device == "cuda" and torch.cuda.is_bf16_supported()):
        return "bf16"
    return "fp16" if device == "cuda" else "fp32"


def trackers() -> list[str]:
    """TensorBoard when installed; W&B when installed and configured (it would otherwise prompt for a login)."""
    found = []
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        found.append("tensorboard")
    if importlib.util.find_spec("wandb") and (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
        found.append("wandb")
    return found


def describe(device: Device) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    if device == "hpu":
        return f"Intel Gaudi ({torch.hpu.get_device_name()}) x{torch.hpu.device_count()}"  # type: ignore[attr-defined]
    return (
        f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )
