"""Toolchain choices that need no build: CUDA flash-attention pairs and the warning when one is missing."""

from pathlib import Path

import pytest

from orchestrator.tools import toolchain
from orchestrator.errors import ToolchainError


def tc(backends, fa):
    return toolchain.Toolchain(bin_dir=Path("/x"), commit="0c1e570", version="", compiler="", target="",
                               backends=backends, cuda_fa_quants=fa)


def test_fa_quants_are_checked_sorted_and_keep_f16():
    assert toolchain.normalize_fa_quants("q8_0-q4_0; Q8_0-q8_0") == "f16-f16,q8_0-q4_0,q8_0-q8_0"
    assert toolchain.normalize_fa_quants("all") == "all"
    with pytest.raises(ToolchainError, match="'q8-q8' is not a K-V pair"):
        toolchain.normalize_fa_quants("q8-q8")
    assert "-DGGML_CUDA_FA_QUANTS=f16-f16,q4_0-q4_0" in toolchain.build_flags(True, "f16-f16,q4_0-q4_0")
    assert not any("CUDA" in f for f in toolchain.build_flags(False))


def test_a_rocm_build_asks_for_hip_and_an_image_for_the_cards_rented_boxes_have():
    flags = toolchain.build_flags(False, rocm=True)
    assert "-DGGML_HIP=ON" in flags and not any("CUDA" in f or "AMDGPU" in f for f in flags)
    portable = toolchain.build_flags(False, portable=True, rocm=True)
    assert "-DAMDGPU_TARGETS=gfx90a;gfx942;gfx1100" in portable and "-DGGML_NATIVE=OFF" in portable
    assert toolchain.build_key(flags) != toolchain.build_key(toolchain.build_flags(False))
    with pytest.raises(toolchain.ToolchainError, match="one GPU backend"):
        toolchain.build(cuda=True, rocm=True)


def test_warning_names_the_pairs_a_cuda_build_lacks():
    pairs = [("f16", "f16"), ("q8_0", "q4_0"), ("q5_0", "q5_0")]
    w = toolchain.fa_warning(tc(("CUDA",), "f16-f16,q8_0-q4_0"), pairs)
    assert "K/V q5_0/q5_0;" in w and "q8_0/q4_0" not in w and "--fa-quants all" in w
    assert toolchain.fa_warning(tc(("CUDA",), "all"), pairs) is None
    assert toolchain.fa_warning(tc(("CPU",), None), pairs) is None
    assert toolchain.fa_warning(tc(("CUDA",), None), pairs) is None  # tools we did not build: unknown
