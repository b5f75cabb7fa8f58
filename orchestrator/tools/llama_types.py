"""Type names the llama.cpp tools accept (commit 0c1e570, and ik_llama.cpp as vendored by
ik-llama-cpp-python 0.1.5), used to validate recipes offline.

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
# the types ik_llama.cpp adds (its llama-quantize QUANT_OPTIONS less mainline's): new trellis (*_KT), non-linear
# (IQ*_K, IQ*_KS, IQ*_KL) and row-interleaved (*_R4, *_R8, *_R16) types. Mainline's Q1_0, Q2_0, TQ*_0 and
# MXFP4_MOE are not in ik's list: the plan-time check against the tool's --help says so.
IK_QUANT_TYPES = (
    "Q6_0", "MXFP4", "IQ2_XXS_R4", "IQ2_XS_R4", "IQ2_M_R4", "IQ1_S_R4", "IQ1_M_R4", "IQ1_BN", "IQ2_BN",
    "IQ2_BN_R4", "Q2_K_R4", "IQ3_KT", "IQ4_KT", "IQ3_XXS_R4", "IQ3_S_R4", "Q3_K_R4", "IQ4_NL_R4", "IQ4_XS_R8",
    "Q4_0_R8", "Q5_0_R4", "Q6_0_R4", "Q8_0_R8", "Q8_KV", "IQ4_KS", "IQ4_KS_R4", "IQ5_KS_R4", "IQ4_KSS",
    "IQ5_KS", "IQ2_K", "IQ2_K_R4", "IQ2_KS", "IQ1_KT", "IQ2_KT", "IQ2_KL", "IQ3_KS", "IQ3_K", "IQ3_K_R4",
    "IQ3_KL", "IQ4_K", "IQ4_K_R4", "IQ5_K", "IQ5_K_R4", "IQ6_K", "Q4_K_R4", "Q5_K_R4", "Q6_K_R4", "Q8_K_R8",
    "Q8_KV_R8", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "BF16_R16",
)
TOOLCHAINS = ("mainline", "ik")
# the ggml tensor types ik_llama.cpp writes that gguf-py (mainline's) does not know: id -> (name, values per
# block, bytes per block), as ik's own ggml_type_name/ggml_blck_size/ggml_type_size print them (0.1.5 sdist)
IK_GGML_TYPES = {
    31: ("Q4_0_4X4", 32, 18), 32: ("Q4_0_4X8", 32, 18), 33: ("Q4_0_8X8", 32, 18), 36: ("I2_S", 1, 1),
    97: ("Q8_0_X4", 32, 34), 98: ("Q8_1_X4", 32, 36), 99: ("Q8_2_X4", 32, 36), 133: ("Q6_0", 32, 26),
    134: ("IQ1_BN", 64, 13), 135: ("IQ2_BN", 64, 16), 136: ("Q8_K64", 64, 68), 137: ("IQ2_K", 256, 76),
    138: ("IQ3_K", 256, 110), 139: ("IQ4_K", 256, 144), 140: ("IQ5_K", 256, 176), 141: ("IQ6_K", 256, 212),
    144: ("IQ4_KS", 256, 136), 145: ("IQ2_KS", 256, 70), 146: ("IQ4_KSS", 256, 128), 147: ("Q8_K16", 64, 64),
    148: ("Q8_K32", 256, 296), 149: ("Q8_KR8", 256, 296), 150: ("Q8_K128", 128, 140), 151: ("Q8_KV", 32, 32),
    152: ("IQ5_KS", 256, 168), 153: ("IQ2_KT", 256, 68), 154: ("IQ3_KT", 256, 100), 155: ("IQ4_KT", 256, 128),
    156: ("IQ3_KS", 256, 102), 157: ("IQ2_KL", 256, 86), 158: ("IQ1_KT", 256, 56), 202: ("Q4_0_R8", 32, 18),
    206: ("Q5_0_R4", 32, 22), 208: ("Q8_0_R8", 32, 34), 210: ("Q2_K_R4", 256, 84), 211: ("Q3_K_R4", 256, 110),
    212: ("Q4_K_R4", 256, 144), 213: ("Q5_K_R4", 256, 176), 214: ("Q6_K_R4", 256, 210),
    216: ("IQ2_XXS_R4", 256, 66), 217: ("IQ2_XS_R4", 256, 74), 218: ("IQ3_XXS_R4", 256, 98),
    219: ("IQ1_S_R4", 32, 6), 220: ("IQ4_NL_R4", 32, 18), 221: ("IQ3_S_R4", 256, 110),
    222: ("IQ2_S_R4", 256, 82), 223: ("IQ4_XS_R8", 256, 136), 229: ("IQ1_M_R4", 32, 7), 230: ("BF16_R16", 1, 2),
    233: ("Q6_0_R4", 32, 26), 335: ("IQ2_BN_R4", 64, 16), 337: ("IQ2_K_R4", 256, 76),
    338: ("IQ3_K_R4", 256, 110), 339: ("IQ4_K_R4", 256, 144), 340: ("IQ5_K_R4", 256, 176),
    344: ("IQ4_KS_R4", 256, 136), 352: ("IQ5_KS_R4", 256, 168), 397: ("Q8_K_R16", 256, 258),
    398: ("Q8_KV_R8", 32, 32), 399: ("Q8_K_R8", 256, 258),
}
FLOAT_TYPES = ("F32", "F16", "BF16")
# `general.file_type` (llama_ftype) -> the name llama-quantize takes; Q4_K, Q3_K, Q5_K are aliases of *_M
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}


def nominal_bpw(type_name: str) -> float:
    """Bits per weight a type stands for (its number, plus the block scales): Q4_K_M 5, IQ3_XXS 3.5,
    Q8_0 8.5, F16 16. For estimates only; a real file's mix is read from it."""
    import re

    t = type_name.upper()
    if t in ("F32", "COPY"):
        return 32.0
    if t in ("F16", "BF16"):
        return 16.0
    m = re.search(r"(\d+)", t)
    return float(m.group(1)) + (0.5 if t.endswith("_0") or t.startswith(("IQ", "TQ")) else 1.0) if m else 8.5


def file_type_name(file_type) -> str | None:
    """The name of a GGUF's `general.file_type`, or None when absent or unknown to this build."""
    try:
        return FILE_TYPES.get(int(file_type) & ~1024) if file_type is not None else None  # 1024: "guessed"
    except (TypeError, ValueError):
        return None
# these need an importance matrix for (almost) every tensor
NEEDS_IMATRIX = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "IQ3_XXS", "Q2_K_S",
                 "IQ2_XXS_R4", "IQ2_XS_R4", "IQ1_S_R4", "IQ1_M_R4")  # the last four: ik_llama.cpp's

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
    """llama-quantize compares type names case-insensitively; a type of either toolchain."""
    up = name.strip().upper()
    return up if up in QUANT_TYPES or up in IK_QUANT_TYPES else None


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
        close = [c for c in choices if close and c.lower() == close[0]]
    return f"did you mean {close[0]}? " if close else ""
