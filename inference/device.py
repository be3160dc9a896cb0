"""Where the model runs and in which precision: cuda, then Gaudi (hpu), then cpu."""

from __future__ import annotations

import importlib.util

import torch

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def hpu_available() -> bool:
    """Gaudi is usable when Habana's PyTorch bridge is installed and sees a device."""
    if importlib.util.find_spec("habana_frameworks") is None:
        return False
    import habana_frameworks.torch.core  # noqa: F401  (registers the hpu device with torch)

    return bool(getattr(torch, "hpu", None) and torch.hpu.is_available())


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, or the best one present: cuda, then hpu, then cpu."""
    if requested:
        if requested.startswith("hpu"):
            hpu_available()  # importing the bridge is what makes torch accept "hpu"
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hpu_available():
        return torch.device("hpu")
    return torch.device("cpu")


def pick_dtype(device: torch.device, requested: str | torch.dtype | None = None) -> torch.dtype:
    """bf16 on Gaudi and on GPUs that have it, fp16 on older GPUs, fp32 on CPU unless asked."""
    if isinstance(requested, torch.dtype):
        return requested
    if requested:
        if requested not in DTYPES:
            raise ValueError(f"unknown dtype {requested!r}; use one of {', '.join(DTYPES)}")
        return DTYPES[requested]
    if device.type == "hpu":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
