"""llama-quantize parsing and judging, on outputs recorded from real runs."""

import pytest

from orchestrator.errors import ToolFailed
from orchestrator.tools.llama_types import QUANT_TYPES
from orchestrator.tools import quantize as tq


def test_sizes_times_fallbacks_overrides(fixture_text, tmp_path):
    out = tmp_path / "q.gguf"
    out.write_bytes(b"GGUF" + b"\0" * 16)
    s = tq.judge(0, fixture_text("quantize_q4_k_m.stdout"), fixture_text("quantize_q4_k_m.stderr"), out)
    assert (s["model_mib"], s["model_bpw"], s["quant_mib"], s["quant_bpw"]) == (256.63, 16.0, 99.07, 6.18)
    assert s["fallback_tensors"] == 180 and s["overrides_applied"] == 1
    assert s["quantize_ms"] > 0


@pytest.mark.parametrize("name, reason", [
    ("quantize_requant_refused", "needs --allow-requantize"),
    ("quantize_needs_imatrix", "needs an imatrix"),
])
def test_failures(fixture_text, tmp_path, name, reason):
    with pytest.raises(ToolFailed, match=reason):
        tq.judge(int(fixture_text(f"{name}.rc")), fixture_text(f"{name}.stdout"), fixture_text(f"{name}.stderr"),
                 tmp_path / "none.gguf")


def test_not_a_gguf_is_a_failure(fixture_text, tmp_path):
    bad = tmp_path / "q.gguf"
    bad.write_bytes(b"\0" * 64)  # what a killed quantize leaves: a zero-filled header
    with pytest.raises(ToolFailed, match="not a GGUF"):
        tq.judge(0, fixture_text("quantize_q4_k_m.stdout"), fixture_text("quantize_q4_k_m.stderr"), bad)


def test_help_lists_the_types_we_validate_against(fixture_text):
    # read from what --help prints, as prepare reads it (stdout and stderr; the tool exits 1 on --help)
    types = tq.parse_help(fixture_text("quantize_help.stdout") + fixture_text("quantize_help.stderr"))
    assert set(types) == set(QUANT_TYPES)


def test_argv_flags_before_positionals():
    argv = tq.argv("llama-quantize", "in.gguf", "out.gguf", "Q4_K_M", imatrix="im.gguf",
                   tensor_types={r"blk\.0\.ffn_down": "q8_0"}, allow_requantize=True, threads=2)
    assert argv == ["llama-quantize", "--allow-requantize", "--imatrix", "im.gguf", "--tensor-type",
                    r"blk\.0\.ffn_down=q8_0", "in.gguf", "out.gguf", "Q4_K_M", "2"]


def test_fallbacks_of_a_model_whose_rows_the_blocks_do_not_divide(fixture_text, tmp_path):
    """Gemma 3 270M (n_embd 640) to Q2_K: 90 of 236 tensors get another type than asked."""
    out = tmp_path / "q.gguf"
    out.write_bytes(b"GGUF" + b"\0" * 16)
    s = tq.judge(0, fixture_text("gemma3_quantize_q2_k.stdout"), fixture_text("gemma3_quantize_q2_k.stderr"), out)
    assert (s["fallback_tensors"], s["quant_bpw"]) == (90, 6.88)
