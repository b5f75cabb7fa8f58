"""llama-bench: argv for one model and one K/V pair, jsonl parsing, statistics from the samples."""

from __future__ import annotations

import json
import math
import re

from orchestrator.errors import ToolFailed
from orchestrator.tools import File, first_failure, tail, threads_args

FAILURES = [
    (re.compile(r"failed to create context"),
     "context creation failed (quantized V without flash attention, or memory)"),
    (re.compile(r"failed to load model"), "model failed to load"),
    (re.compile(r"failed to run (?:prompt|gen)|failed to decode"), "decode failed"),
    (re.compile(r"invalid parameter for argument: (\S+)"), "invalid argument"),
    (re.compile(r"out of memory|failed to allocate|cudaMalloc failed"), "out of memory"),
]


def argv(exe: File, model: File, *, cache_k: str, cache_v: str, prompt: int, gen: int, depth: list[int],
         repetitions: int, flash_attn: str, gpu_layers: int, threads: int | None, batch: int, ubatch: int,
         extra: list[str], flavor: str = "mainline") -> list:
    if flavor == "ik":  # ik_llama.cpp's llama-bench: -o json (no jsonl), -fa 0|1, no -d (the recipe asks depth 0)
        out, fa, depth_args = "json", "0" if flash_attn == "off" else "1", []
    else:
        out, fa, depth_args = "jsonl", flash_attn, ["-d", ",".join(str(d) for d in depth)]
    return [exe, "-m", model, "-o", out, "-p", str(prompt), "-n", str(gen), *depth_args,
            "-r", str(repetitions), "-ctk", cache_k, "-ctv", cache_v,
            "-fa", fa, "-ngl", str(gpu_layers), "-b", str(batch), "-ub", str(ubatch),
            *threads_args(threads), *extra]


def expected_tests(prompt: int, gen: int, depth: list[int]) -> int:
    return len(depth) * ((prompt > 0) + (gen > 0))


def parse_records(text: str) -> list[dict]:
    """Result objects from -o jsonl (or a possibly unterminated -o json array)."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    if records:
        return records
    body = text.strip()
    if body.startswith("["):  # -o json, cut short by a failed test: close it ourselves
        for candidate in (body, body.rstrip(",\n ") + "]"):
            try:
                return [r for r in json.loads(candidate) if isinstance(r, dict)]
            except ValueError:
                continue
    return []


def test_name(n_prompt: int, n_gen: int, n_depth: int) -> str:
    name = "+".join(f"{k}{v}" for k, v in (("pp", n_prompt), ("tg", n_gen)) if v)
    return f"{name} @ d{n_depth}" if n_depth else name


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def summarize(rec: dict) -> dict:
    """One store row from one result; statistics recomputed from samples_ns (stddev_ns overflows). A record
    whose counts or samples are not finite numbers (NaN in a hand-edited file) is a ToolFailed."""
    try:
        n_p, n_g, n_d = int(rec.get("n_prompt", 0)), int(rec.get("n_gen", 0)), int(rec.get("n_depth", 0))
        samples = [int(s) for s in rec.get("samples_ns") or []]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ToolFailed(f"a llama-bench record with a value that is not a finite number ({exc})") from None
    ts = [1e9 * (n_p + n_g) / s for s in samples if s > 0]
    ts_mean, ts_std = _mean_std(ts)
    ns_mean, ns_std = _mean_std([float(s) for s in samples])
    return {
        "test": test_name(n_p, n_g, n_d), "n_prompt": n_p, "n_gen": n_g, "n_depth": n_d,
        "repetitions": len(samples), "ts_mean": ts_mean, "ts_std": ts_std, "ns_mean": ns_mean,
        "ns_std": ns_std, "samples_ns": json.dumps(samples),
        "bench_type_k": rec.get("type_k"), "bench_type_v": rec.get("type_v"),
        "flash_attn": rec.get("flash_attn"), "n_gpu_layers": rec.get("n_gpu_layers"),
        "n_threads": rec.get("n_threads"), "model_size": rec.get("model_size"),
        "n_params": rec.get("model_n_params"), "build_commit": rec.get("build_commit"),
        "backends": rec.get("backends"), "cpu_info": rec.get("cpu_info"), "gpu_info": rec.get("gpu_info"),
        "model_type": rec.get("model_type"), "model_filename": rec.get("model_filename"),
        "test_time": rec.get("test_time"),
    }


def failure_reason(text: str) -> str | None:
    return first_failure(text, FAILURES)


def judge(rc: int, stdout: str, stderr: str, n_expected: int) -> list[dict]:
    """Every expected test must have produced a result line; partial output is a failure."""
    rows = [summarize(r) for r in parse_records(stdout)]
    if len(rows) < n_expected or rc != 0:
        reason = failure_reason(stderr) or f"{len(rows)} of {n_expected} tests produced results (rc {rc})"
        raise ToolFailed(reason, stderr_tail=tail(stderr))
    return rows
