"""Choosing the compute device and the numeric precision it supports."""
from __future__ import annotations

import os

import torch

from alkit.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ConfigError(f"device '{name}' is unknown; choose auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was requested but CUDA is not available; use --device cpu or auto")
    return torch.device(name)


# oneDNN's ISA levels (``ONEDNN_MAX_CPU_ISA``) that include bf16 dot products; a cap below them emulates bf16
ONEDNN_BF16_ISAS = frozenset({"ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512",
                              "AVX512_CORE_AMX", "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16"})


def onednn_isa_cap() -> str | None:
    """The instruction-set cap put on oneDNN's kernels by ``ONEDNN_MAX_CPU_ISA`` (upper-cased), or None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return cap or None


def cap_emulates_bf16(cap: str | None) -> bool:
    """True when a cap, as :func:`onednn_isa_cap` gives it, keeps oneDNN below bf16 dot products (bf16 emulated)."""
    return bool(cap) and cap not in ONEDNN_BF16_ISAS


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AVX512-BF16 or AMX) and oneDNN may use them; else bf16
    is emulated and slow. A ``ONEDNN_MAX_CPU_ISA`` cap below AVX512_CORE_BF16 counts as no native bf16."""
    if cap_emulates_bf16(onednn_isa_cap()):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto``: fp32 on a GPU, bf16 on a CPU with native bf16 (AVX512-BF16 or AMX), else fp32.

    On a GPU the reference CNN trained slower in bf16 than in fp32 at equal F1: its steps are bound by
    kernel launches, and autocast adds casts (BENCHMARKS.md, ``end-to-end-cuda-*``). bf16 on a GPU is for
    larger models, and is asked for by name.
    """
    if name not in PRECISIONS:
        raise ConfigError(f"precision '{name}' is unknown; choose one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"
