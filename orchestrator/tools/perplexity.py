"""llama-perplexity: base logits (--kl-divergence-base), KLD runs, plain PPL; parsing and judging."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

from orchestrator.errors import ToolFailed
from orchestrator.tools import File, NUM, first_failure, tail, threads_args

# mainline: "Final estimate: PPL = 12.4491 +/- 2.60687"; ik_llama.cpp: "… PPL over 3 chunks for n_ctx=128 = …"
FINAL_RE = re.compile(rf"Final estimate: PPL(?: over \d+ chunks for n_ctx=\d+)? = ({NUM}) \+/- ({NUM})")
OVER_RE = re.compile(r"(?:perplexity|kl_divergence): (?:calculating perplexity|computing) over (\d+) chunks, "
                     r"n_ctx=(\d+)")
SECTION_RE = re.compile(r"^=+ (.*?) =+\s*$")
LOG_PREFIX_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+ [IWEDT] ")
LOGITS_MAGIC = b"_logits_"

# known failure messages (most of them exit 0): pattern -> reason recorded for the cell
FAILURES = [
    (re.compile(r"you need at least (\d+) tokens"), "corpus too short for this context"),
    (re.compile(r"quantized V cache requires flash_attn|V cache quantization requires flash_attn|"
                r"requires Flash Attention"), "quantized V cache needs flash attention"),
    (re.compile(r"inconsistent vocabulary \((\d+) vs (\d+)\)"), "vocabulary differs from the reference"),
    (re.compile(r"failed to open .*|must provide a name of a file containing the log probabilities"),
     "base logits file missing"),
    (re.compile(r"does not look like a file containing log-probabilities"), "base logits file invalid"),
    (re.compile(r"failed reading (?:n_vocab|evaluation tokens|log-probs)"), "base logits file truncated"),
    (re.compile(r"has been computed with (\d+), while the current context is (\d+)"), "context differs from the base"),
    (re.compile(r"failed to decode"), "decode failed (context or memory)"),
    (re.compile(r"failed to allocate|out of memory|cudaMalloc failed|unable to allocate"), "out of memory"),
    (re.compile(r"unable to load model|failed to load model"), "model failed to load"),
    (re.compile(r"Unsupported cache type: (\S+)"), "cache type not supported"),
    (re.compile(r"error: invalid argument: (\S+)"), "invalid argument"),
    (re.compile(r"Unexpected negative standard deviation"), "degenerate PPL statistics"),
]


def common_args(ctx: int, batch: int, ubatch: int, flash_attn: str, gpu_layers: int,
                threads: int | None) -> list:
    return ["-c", str(ctx), "-b", str(batch), "-ub", str(ubatch), "-fa", flash_attn,
            "-ngl", str(gpu_layers), *threads_args(threads)]


def base_argv(exe: File, model: File, corpus: File, logits: File, *, ctx: int, chunks: int | None,
              batch: int, ubatch: int, flash_attn: str, gpu_layers: int, threads: int | None,
              extra: list[str]) -> list:
    """The reference run: PPL of the reference model, and its logits written to `logits`."""
    chunk_args = ["--chunks", str(chunks)] if chunks else []
    return [exe, "-m", model, "-f", corpus, "--kl-divergence-base", logits, *chunk_args,
            *common_args(ctx, batch, ubatch, flash_attn, gpu_layers, threads),
            "-ctk", "f16", "-ctv", "f16", *extra]


def kld_argv(exe: File, model: File, logits: File, *, ctx: int, batch: int, ubatch: int,
             cache_k: str, cache_v: str, flash_attn: str, gpu_layers: int, threads: int | None,
             extra: list[str]) -> list:
    return [exe, "-m", model, "--kl-divergence-base", logits, "--kl-divergence",
            *common_args(ctx, batch, ubatch, flash_attn, gpu_layers, threads),
            "-ctk", cache_k, "-ctv", cache_v, *extra]


# ---------------------------------------------------------------------------------------------
# parsing


def _column(label: str, section: str) -> str | None:
    """Map a statistics label (whitespace collapsed) to a store column."""
    fixed = {
        "Mean PPL(Q)": "ppl_q", "Mean PPL(base)": "ppl_base", "Cor(ln(PPL(Q)), ln(PPL(base)))": "cor_ln_ppl",
        "Mean ln(PPL(Q)/PPL(base))": "ln_ratio", "Mean PPL(Q)/PPL(base)": "ppl_ratio",
        "Mean PPL(Q)-PPL(base)": "ppl_diff", "RMS Δp": "rms_dp", "Same top p": "same_top",
    }
    if label in fixed:
        return fixed[label]
    m = re.fullmatch(r"(Mean|Maximum|Minimum|Median|[\d.]+%) (KLD|Δp)", label)
    if not m:
        return None
    prefix = "kld" if m.group(2) == "KLD" else "dp"
    which = m.group(1)
    names = {"Mean": "mean", "Maximum": "max", "Minimum": "min", "Median": "median"}
    if which in names:
        return f"{prefix}_{names[which]}"
    pct = which.rstrip("%")
    pct = pct[:-2] if pct.endswith(".0") else pct
    return f"{prefix}_p{pct.replace('.', '_')}"


def parse_kld(text: str) -> dict:
    """The statistics block of a --kl-divergence run: {column: value, column_err: ±, ...}.

    Labels not known to this parser land in `unparsed` so that new metrics are visible, not lost.
    """
    out: dict = {}
    unparsed: dict = {}
    section = None
    for line in text.splitlines():
        m = SECTION_RE.match(line.strip())
        if m:
            section = m.group(1)
            continue
        if section is None:
            continue
        if not line.strip():  # a blank line closes a section: what follows is not statistics
            section = None
            continue
        if ":" not in line or LOG_PREFIX_RE.match(line):
            continue
        label, _, rest = line.partition(":")
        label = " ".join(label.split())
        nums = [float(x) for x in re.findall(NUM, rest)]
        if not nums:
            continue
        col = _column(label, section)
        if col is None:
            unparsed[label] = nums
            continue
        out[col] = nums[0]
        if len(nums) > 1:
            out[f"{col}_err"] = nums[1]
    if unparsed:
        out["unparsed"] = unparsed
    over = OVER_RE.search(text)
    if over:
        out["n_chunks"] = int(over.group(1))
    return out


# what a complete statistics block has: the main statistics with their ±, and "Same top p", the block's
# last line (a log cut anywhere before its end lacks it, or its ±)
COMPLETE = ("ppl_q", "ppl_q_err", "ppl_base", "ppl_base_err", "kld_mean", "kld_mean_err", "kld_median", "kld_max",
            "dp_mean", "dp_mean_err", "rms_dp", "same_top", "same_top_err")
MAY_BE_NAN = {"cor_ln_ppl"}  # a correlation over chunks: undefined for one chunk


def stats_problem(stats: dict) -> str | None:
    """Why a parsed statistics block cannot be stored, or None: a statistic missing (a cut output) or
    not a finite number (llama-perplexity prints `nan` and exits 0 when a model's logits are garbage)."""
    missing = [c for c in COMPLETE if c not in stats]
    if missing:
        return f"incomplete statistics block (no {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''})"
    bad = [f"{c} = {v}" for c, v in stats.items()
           if isinstance(v, float) and not math.isfinite(v) and c.removesuffix("_err") not in MAY_BE_NAN]
    if bad:
        return f"non-finite statistic: {', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}"
    return None


def parse_final(text: str) -> tuple[float, float] | None:
    m = FINAL_RE.search(text)
    return (float(m.group(1)), float(m.group(2))) if m else None


def failure_reason(text: str) -> str | None:
    return first_failure(text, FAILURES)


# ---------------------------------------------------------------------------------------------
# the base logits file


def logits_size(n_ctx: int, n_vocab: int, n_chunk: int) -> int:
    """Exact size of a --kl-divergence-base file (see docs: 16-bit rows of n_vocab rounded to even + 4)."""
    rows = n_ctx - 1 - n_ctx // 2
    row_bytes = (2 * ((n_vocab + 1) // 2) + 4) * 2
    return 20 + 4 * n_chunk * n_ctx + n_chunk * rows * row_bytes


def file_ppl_chunks(path: Path) -> list[float]:
    """The reference PPL after each chunk as a KLD run reading this file computes it: from the 16-bit
    log-probs it holds (each row: float scale, float min, then n_vocab values; the scored token's
    log-prob is scale·v + min), not from the reference run's own float logits. The two differ where the
    16-nat window of a row clips a very unlikely token (0.2 % over 40 chunks of python-docs at ctx 128),
    so a KLD run is checked against this. Reads only the scored tokens' values."""
    import numpy as np

    header = read_logits_header(path)
    if header is None:
        return []
    n_ctx, n_vocab, n_chunk = header
    rows, nv = scored_per_chunk(n_ctx), 2 * ((n_vocab + 1) // 2) + 4
    tokens = np.memmap(path, dtype="<i4", mode="r", offset=20, shape=(n_chunk, n_ctx))
    table = np.memmap(path, dtype="<u2", mode="r", offset=20 + 4 * n_chunk * n_ctx, shape=(n_chunk * rows, nv))
    first = n_ctx // 2
    out, total, count = [], 0.0, 0
    for c in range(n_chunk):
        scored = np.asarray(tokens[c, first + 1:first + 1 + rows], dtype=np.int64)
        total += rows_nll(table[c * rows:(c + 1) * rows], scored)
        count += rows
        out.append(math.exp(total / count))
    return out


def rows_nll(table, scored) -> float:
    """The reference's negative log-likelihood summed over rows of a base file (n × (4 + n_vocab…) uint16:
    float scale, float min, then the 16-bit values) for their scored tokens: −(scale·v + min), in float32 as
    llama-perplexity computes it, summed in float64."""
    import numpy as np

    at = np.arange(len(scored))
    head = np.ascontiguousarray(table[at, :4]).view("<f4")
    values = table[at, 4 + scored].astype(np.float32)
    return float((-(head[:, 0] * values + head[:, 1])).astype(np.float64).sum())


def scored_per_chunk(n_ctx: int) -> int:
    """Tokens a chunk scores: its second half, less the last (llama-perplexity's `first` = n_ctx/2)."""
    return n_ctx - 1 - n_ctx // 2


def logits_slices(n_ctx: int, n_vocab: int, n_chunk: int, first: int, count: int) -> tuple[tuple[int, int], ...]:
    """Where chunks first..first+count-1 of a base file are: (offset, length) of their tokens, then of
    their rows. A file of just these chunks is a new header and these two slices: a KLD run reads it as a
    base of `count` chunks (tokens first, all of them; then each chunk's rows, in order)."""
    rows = n_ctx - 1 - n_ctx // 2
    row_bytes = (2 * ((n_vocab + 1) // 2) + 4) * 2
    tokens = 20 + 4 * first * n_ctx, 4 * count * n_ctx
    logits = 20 + 4 * n_chunk * n_ctx + first * rows * row_bytes, count * rows * row_bytes
    return tokens, logits


def logits_header(n_ctx: int, n_vocab: int, n_chunk: int) -> bytes:
    return LOGITS_MAGIC + struct.pack("<iii", n_ctx, n_vocab, n_chunk)


def read_logits_header(path: Path) -> tuple[int, int, int] | None:
    """(n_ctx, n_vocab, n_chunk), or None when the file is missing, a stub or not a logits file."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    return parse_logits_header(head)


def parse_logits_header(head: bytes) -> tuple[int, int, int] | None:
    if len(head) < 20 or head[:8] != LOGITS_MAGIC:
        return None
    return struct.unpack("<iii", head[8:20])


def logits_problem(path: Path, n_vocab: int, ctx: int) -> str | None:
    """What is wrong with a base-logits file a KLD run is about to read, or None: llama-perplexity
    itself would read a truncated file up to its end and print statistics of what it got."""
    header = read_logits_header(path)
    if header is None:
        return "not a base-logits file (no '_logits_' header)"
    n_ctx, hv, n_chunk = header
    if hv != n_vocab:
        return f"written for a vocabulary of {hv} tokens; this model has {n_vocab} (another model's logits)"
    if n_ctx != ctx:
        return f"written at ctx {n_ctx}, the recipe asks {ctx}"
    expected, actual = logits_size(n_ctx, hv, n_chunk), path.stat().st_size
    if actual != expected:
        return f"truncated or damaged: {actual} bytes, its header promises {expected}"
    return None


# ---------------------------------------------------------------------------------------------
# judging a finished process


def judge_base(rc: int, stdout: str, stderr: str, logits: Path, n_vocab: int, ctx: int) -> dict:
    """A base run succeeded only if it printed its PPL and wrote a complete logits file."""
    text = stdout + "\n" + stderr
    final = parse_final(text)
    header = read_logits_header(logits)
    if final is None or header is None:
        raise ToolFailed(failure_reason(text) or f"no final PPL estimate (rc {rc})", stderr_tail=tail(stderr))
    if not all(math.isfinite(x) for x in final):
        raise ToolFailed(f"non-finite reference PPL {final[0]} ± {final[1]}", stderr_tail=tail(stderr))
    n_ctx, hv, n_chunk = header
    expected = logits_size(n_ctx, hv, n_chunk)
    actual = logits.stat().st_size
    if hv != n_vocab or n_ctx != ctx or actual != expected:
        raise ToolFailed(f"logits file inconsistent: header n_ctx={n_ctx} n_vocab={hv} n_chunk={n_chunk}, "
                         f"size {actual} != {expected} (model n_vocab {n_vocab}, ctx {ctx})",
                         stderr_tail=tail(stderr))
    if rc != 0:
        raise ToolFailed(f"exit code {rc} after writing the logits", stderr_tail=tail(stderr))
    return {"ppl_base": final[0], "ppl_base_err": final[1], "n_chunks": n_chunk, "n_ctx": n_ctx,
            "n_vocab": hv, "logits_bytes": actual, "ppl_chunks": [round(x, 8) for x in file_ppl_chunks(logits)]}


def judge_kld(rc: int, stdout: str, stderr: str, base_ppl: float | None, chunks: int | None = None,
              tolerance: float = 1e-3) -> dict:
    """A KLD run succeeded only if its statistics block is there and its base PPL is ours; `chunks`: it read
    exactly these chunks (served from a larger base, whose PPL over them `base_ppl` is, where recorded)."""
    text = stdout + "\n" + stderr
    stats = parse_kld(stdout)
    over = OVER_RE.search(stderr)
    if over:
        stats["n_chunks"] = int(over.group(1))
    reason = failure_reason(stderr)
    if "kld_mean" not in stats or "ppl_q" not in stats:
        raise ToolFailed(reason or f"no KL divergence statistics in the output (rc {rc})", stderr_tail=tail(text))
    if reason and ("vocabulary" in reason or "context" in reason or "truncated" in reason):
        raise ToolFailed(reason, stderr_tail=tail(stderr))
    problem = stats_problem(stats)
    if problem:
        raise ToolFailed(f"{problem}: the model's output is not usable", stderr_tail=tail(text))
    # The KLD run recomputes PPL(base) from the stored 16-bit log-probs (a 16-nat window in 65535
    # steps): the same figure computed from the file (file_ppl_chunks) matches it to its printed digits
    # (tolerance 1e-5); the base run's full-precision estimate only to ~1e-3, where a row's window clipped
    # an unlikely token (the check of stores made before 0.2). Another corpus, model or ctx moves it by far
    # more.
    if chunks is not None and stats.get("n_chunks") != chunks:
        raise ToolFailed(f"the run went over {stats.get('n_chunks')} chunks, {chunks} were served",
                         stderr_tail=tail(stderr))
    if base_ppl is not None and not abs(stats.get("ppl_base", float("nan")) - base_ppl) <= tolerance * base_ppl:
        raise ToolFailed(f"Mean PPL(base) {stats.get('ppl_base')} does not match the reference run's "
                         f"{base_ppl}: wrong or damaged logits file", stderr_tail=tail(stderr))
    if rc != 0:
        raise ToolFailed(f"exit code {rc} after printing statistics", stderr_tail=tail(stderr))
    return stats


# ---------------------------------------------------------------------------------------------
# the K/V cache llama.cpp allocates: a probe that only creates the context

KV_REPORT_RE = re.compile(rf"llama_kv_cache: size = +({NUM}) MiB \( *(\d+) cells, +(\d+) layers, +(\d+)/(\d+) "
                          rf"seqs\), K \((\w+)\): +({NUM}) MiB, V \((\w+)\): +({NUM}) MiB")
N_CTX_RE = re.compile(r"llama_context: n_ctx += (\d+)")


def kv_probe_argv(exe: str, model: Path, *, ctx: int, type_k: str, type_v: str, gpu_layers: int = 0,
                  corpus: Path = Path("/dev/null")) -> list:
    """A run that allocates the cache for one sequence of `ctx` and stops at once: an empty corpus
    is too short to evaluate, which llama-perplexity finds only after the context exists. -lv 4
    shows libllama's allocation report; --log-jsonl adds the per-device memory breakdown."""
    return [exe, "-m", str(model), "-f", str(corpus), "-c", str(ctx), "-b", str(ctx),
            "-ctk", type_k, "-ctv", type_v, "-fa", "on", "-ngl", str(gpu_layers), "-lv", "4", "--log-jsonl"]


def parse_kv_report(text: str) -> dict | None:
    """llama.cpp's own account of the K/V cache it allocated (MiB, as printed to 0.01): the sum of every
    cache it reports (a model with sliding-window layers gets one for the full-attention layers and one
    for the sliding-window layers), and each cache in `caches`."""
    caches = [{"total_mib": float(m.group(1)), "cells": int(m.group(2)), "layers": int(m.group(3)),
               "n_seq": int(m.group(5)), "type_k": m.group(6), "k_mib": float(m.group(7)),
               "type_v": m.group(8), "v_mib": float(m.group(9))} for m in KV_REPORT_RE.finditer(text)]
    if not caches:
        return None
    n_ctx = N_CTX_RE.search(text)
    return {"total_mib": sum(c["total_mib"] for c in caches), "k_mib": sum(c["k_mib"] for c in caches),
            "v_mib": sum(c["v_mib"] for c in caches), "layers": sum(c["layers"] for c in caches),
            "cells": max(c["cells"] for c in caches), "n_seq": caches[0]["n_seq"], "type_k": caches[0]["type_k"],
            "type_v": caches[0]["type_v"], "caches": caches, "n_ctx": int(n_ctx.group(1)) if n_ctx else None}


def parse_memory_breakdown(text: str) -> list[dict]:
    """The `fit_memory_breakdown` record of a --log-jsonl run: per device, MiB of model, context
    (the K/V cache and output buffer) and compute buffer, and their sum `self`."""
    import json

    for line in text.splitlines():
        if '"fit_memory_breakdown"' in line:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            return list(rec.get("data", {}).get("rows", []))
    return []


def breakdown_total(rows: list[dict]) -> int:
    """MiB llama.cpp accounts for on the accelerators, or on the host when nothing is offloaded."""
    devices = [r for r in rows if r.get("kind") == "device"]
    return sum(int(r.get("self", 0)) for r in (devices or rows))
