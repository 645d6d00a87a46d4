"""Device and precision choice, including a oneDNN instruction-set cap (``ONEDNN_MAX_CPU_ISA``)."""
from __future__ import annotations

import pytest
import torch

from alkit.models.device import cpu_has_native_bf16, onednn_isa_cap, resolve_precision
from alkit.training.config import TrainConfig

CPU = torch.device("cpu")


def _flags_have_bf16() -> bool:
    with open("/proc/cpuinfo") as f:
        text = f.read()
    return "avx512_bf16" in text or "amx_bf16" in text


@pytest.mark.parametrize("cap", ["AVX2", "avx2", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX2_VNNI_2"])
def test_a_onednn_cap_below_bf16_makes_the_cpu_path_fp32(monkeypatch: pytest.MonkeyPatch, cap: str) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert onednn_isa_cap() == cap.upper()
    assert not cpu_has_native_bf16()
    assert resolve_precision("auto", CPU) == "fp32"
    assert TrainConfig().cheap_scoring_precision(CPU) is None
    assert TrainConfig(scoring="two-stage").cheap_scoring_precision(CPU) == "bf16"  # asked for by name


@pytest.mark.parametrize("cap", ["AVX512_CORE_BF16", "AVX512_CORE_AMX", "ALL", ""])
def test_a_cap_that_keeps_bf16_leaves_the_choice_to_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, cap: str) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert cpu_has_native_bf16() == _flags_have_bf16()
    assert resolve_precision("auto", CPU) == ("bf16" if _flags_have_bf16() else "fp32")


def test_no_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert onednn_isa_cap() is None
    assert cpu_has_native_bf16() == _flags_have_bf16()
