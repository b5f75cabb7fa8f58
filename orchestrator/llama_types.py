"""Type names the llama.cpp tools accept (commit 0c1e570), used to validate recipes offline.

At plan time the weight types are checked again against the toolchain's own `--help` list.
"""

from __future__ import annotations

import difflib

# llama-quantize file types (QUANT_OPTIONS), in its --help order
QUANT_TYPES = (
    "Q1_0", "Q2_0", "Q4_0", "Q4_1", "MXFP4_MOE", "Q5_0", "Q5_1", "IQ2_XXS", "IQ2_XS", "IQ2_S",
    "IQ2_M", "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0", "Q2_K", "Q2_K_S", "IQ3_XXS", "IQ3_S", "IQ3_M",
    "Q3_K", "IQ3_XS", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS", "Q4_K", "Q4_K_S", "Q4_K_M",
    "Q5_K", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32", "COPY",
)
FLOAT_TYPES = ("F32", "F16", "BF16")
# these need an importance matrix for (almost) every tensor
NEEDS_IMATRIX = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "IQ3_XXS", "Q2_K_S")

# ggml tensor types for --tensor-type / --output-tensor-type / --token-embedding-type
GGML_TYPES = (
    "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q2_K", "q3_K", "q4_K",
    "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m",
    "iq4_nl", "iq4_xs", "tq1_0", "tq2_0", "mxfp4", "nvfp4", "q1_0", "q2_0",
)

# K/V cache types: llama-perplexity accepts these; llama-bench the same without f32
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
BENCH_CACHE_TYPES = tuple(t for t in CACHE_TYPES if t != "f32")
UNQUANTIZED_CACHE = ("f32", "f16", "bf16")


def canonical_quant(name: str) -> str | None:
    """llama-quantize compares type names case-insensitively."""
    up = name.strip().upper()
    return up if up in QUANT_TYPES else None


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
        close = [c for c in choices if close and c.lower() == close[0]]
    return f"did you mean {close[0]}? " if close else ""
