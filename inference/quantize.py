"""Int8 dynamic quantization for CPU serving.

`torch.ao.quantization.quantize_dynamic` only swaps `nn.Linear`; GPT-2 (and so DialoGPT) builds
its projections from transformers' `Conv1D`, which it would silently skip, so those are
rewritten as equivalent `nn.Linear` layers first. torch marks `torch.ao.quantization` deprecated
in favour of torchao, but it is still the dependency-free way to get fbgemm int8 kernels on CPU.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers Conv1D (y = x @ W + b, W of shape in x out) by the same nn.Linear."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                in_features, out_features = child.weight.shape
                linear = nn.Linear(in_features, out_features, dtype=child.weight.dtype, device=child.weight.device)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
                replaced += 1
    return replaced


def quantize_int8(model: nn.Module) -> nn.Module:
    """Int8 weights, activations quantized on the fly: CPU only, fp32 models only."""
    if next(model.parameters()).dtype != torch.float32:
        raise ValueError("int8 dynamic quantization needs an fp32 model")
    conv1d_to_linear(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(quantization|quantize_per).*")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
