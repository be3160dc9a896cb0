"""Making a model fast on CPU: oneDNN-packed linear layers, fused GELU, attention chosen by shape,
int8 dynamic quantization, and OpenMP threads that do not slow each other down.

PyTorch's default CPU matmul repacks each weight on every call, which is costly exactly where a
serving batch lives (a few to a few dozen rows): reordering the weights once into oneDNN's
blocked layout runs the same fp32/bf16 math 2-4x faster (the kernels PyTorch's own inductor
uses for frozen CPU models). `torch.ao.quantization.quantize_dynamic` only swaps `nn.Linear`,
and GPT-2 (DialoGPT) builds its projections from transformers' `Conv1D`, which it would silently
skip, so those become equivalent `nn.Linear` layers first. torch marks `torch.ao.quantization`
deprecated in favour of torchao, but it is still the dependency-free way to fbgemm int8 kernels.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import warnings
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.activations import GELUTanh, NewGELUActivation
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import eager_mask
from transformers.pytorch_utils import Conv1D

CPU_ATTENTION = "supportbot_cpu"
_OMP_PAUSE_SOFT = 1  # omp_pause_soft: free threads, keep settings


class PackedLinear(nn.Module):
    """An inference-only nn.Linear whose weight oneDNN has reordered once for fast matmuls."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def packing_available() -> bool:
    """oneDNN is built into this torch and exposes the packed-linear kernels."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _replace(model: nn.Module, kind: type[nn.Module], build) -> int:
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, name, build(child))
                replaced += 1
    return replaced


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers Conv1D (y = x @ W + b, W of shape in x out) by the same nn.Linear."""

    def linear(conv: Conv1D) -> nn.Linear:
        in_features, out_features = conv.weight.shape
        layer = nn.Linear(in_features, out_features, dtype=conv.weight.dtype, device=conv.weight.device)
        with torch.no_grad():
            layer.weight.copy_(conv.weight.t())
            layer.bias.copy_(conv.bias)
        return layer

    return _replace(model, Conv1D, linear)


def pack_linears(model: nn.Module) -> int:
    """Swap every linear layer (GPT-2's Conv1D included) for a PackedLinear; returns how many."""
    conv1d_to_linear(model)
    with torch.no_grad():
        return _replace(model, nn.Linear, PackedLinear)


def fuse_gelu(model: nn.Module) -> int:
    """GPT-2's tanh-GELU written as five tensor ops becomes PyTorch's single fused kernel: the
    same function up to rounding, a quarter of the CPU time of a large decode batch."""
    return _replace(model, NewGELUActivation, lambda _: GELUTanh())


def _attention_by_shape(module: nn.Module, query: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """One new token per row (a decoding step): the model's eager two matrix products, which take
    ~0.6x SDPA's time on that shape on CPU; a prompt (many tokens): SDPA. Both read an eager (additive)
    mask. Chosen per call, not by flipping the shared config, so threads can run the model at once.
    A model whose code has no eager function of that name gets SDPA throughout."""
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if query.shape[2] == 1 and eager is not None:
        return eager(module, query, *args, **kwargs)
    return sdpa_attention_forward(module, query, *args, **kwargs)


AttentionInterface.register(CPU_ATTENTION, _attention_by_shape)
AttentionMaskInterface.register(CPU_ATTENTION, eager_mask)


def use_cpu_attention(model: nn.Module) -> None:
    """Attention by shape (see `_attention_by_shape`) for every layer of `model`."""
    model.config._attn_implementation = CPU_ATTENTION


def quantize_int8(model: nn.Module) -> nn.Module:
    """Int8 weights, activations quantized on the fly: CPU only, fp32 models only."""
    if next(model.parameters()).dtype != torch.float32:
        raise ValueError("int8 dynamic quantization needs an fp32 model")
    conv1d_to_linear(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(quantization|quantize_per).*")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def release_openmp_workers() -> bool:
    """Free the calling thread's idle OpenMP worker threads (OpenMP 5's `omp_pause_resource_all`).

    Every thread that runs torch on several threads gets its own OpenMP team, whose workers stay
    after the work is done. libgomp (PyTorch's OpenMP on Linux) counts them all, idle ones included,
    and once they outnumber the CPUs it stops spinning between parallel regions: each of a decoding
    step's hundreds of regions then waits for a worker to wake from sleep. On 2 cores a one-row
    DialoGPT step on 2 threads took 19 ms beside the loading thread's idle worker (more than on one
    thread: 17 ms), and 11 ms once that worker was freed. So a thread done with multi-threaded work
    frees its workers; OpenMP starts new ones (~0.1 ms) when that thread next needs them. False when
    the OpenMP runtime loaded has no such call.
    """
    pause = _omp_pause()
    return pause is not None and pause(_OMP_PAUSE_SOFT) == 0


@functools.cache
def _omp_pause() -> Any:
    """The loaded OpenMP runtime's pause call (torch's own runtime, loaded into the global namespace)."""
    try:
        loaded = ctypes.CDLL(None)
    except (OSError, TypeError):  # Windows has no global namespace to look in
        return None
    return getattr(loaded, "omp_pause_resource_all", None)
