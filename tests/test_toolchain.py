"""Toolchain choices that need no build: CUDA flash-attention pairs and the warning when one is missing."""

from pathlib import Path

import pytest

from orchestrator import toolchain
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


def test_warning_names_the_pairs_a_cuda_build_lacks():
    pairs = [("f16", "f16"), ("q8_0", "q4_0"), ("q5_0", "q5_0")]
    w = toolchain.fa_warning(tc(("CUDA",), "f16-f16,q8_0-q4_0"), pairs)
    assert "K/V q5_0/q5_0;" in w and "q8_0/q4_0" not in w and "--fa-quants all" in w
    assert toolchain.fa_warning(tc(("CUDA",), "all"), pairs) is None
    assert toolchain.fa_warning(tc(("CPU",), None), pairs) is None
    assert toolchain.fa_warning(tc(("CUDA",), None), pairs) is None  # tools we did not build: unknown
