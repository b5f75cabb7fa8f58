"""`quantsweep import`: logs made by hand with llama-perplexity / llama-bench -> store rows."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from orchestrator.errors import ToolFailed, UsageError
from orchestrator.files import sha256_text
from orchestrator.tools import bench as tb, perplexity as tp, tasks as tt

KV_TYPES_RE = re.compile(r"llama_kv_cache:.*?K \((\w+)\).*?V \((\w+)\)")
CTX_RE = re.compile(r"n_ctx=(\d+)")


def _jsonl_log_text(text: str) -> str | None:
    """Rebuild the output text from a --log-jsonl stream (output-level records only)."""
    msgs, any_log = [], False
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("type") == "log":
            any_log = True
            msgs.append(rec.get("msg", "") if rec.get("level") == "none" else rec.get("msg", "") + "\n")
    return "".join(msgs) if any_log else None


def rows_from_file(path: Path, name: str, weights: str | None = None, cache_k: str | None = None,
                   cache_v: str | None = None, task: str | None = None) -> list[dict]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    common = {"recipe": name, "source": f"import:{path.name}", "corpus_sha256": None,
              "log_dir": str(path.resolve()), "status": "ok", "job_key": f"import-{sha256_text(text)[:24]}"}
    records = tb.parse_records(text)
    if records and "samples_ns" in records[0]:
        rows = []
        for i, rec in enumerate(records, 1):
            try:
                s = tb.summarize(rec)
            except ToolFailed as exc:
                raise UsageError(f"{path}: record {i}: {exc.reason}; nothing imported") from None
            label = weights or Path(rec.get("model_filename") or path.stem).stem
            k, v = rec.get("type_k", "f16"), rec.get("type_v", "f16")
            rows.append({**common, **s, "measurement": "bench", "weights": label, "type_k": k, "type_v": v,
                         "cell_id": f"{label}|{k}|{v}|c0", "toolchain_commit": rec.get("build_commit"),
                         "toolchain_backends": rec.get("backends"), "host_cpu": rec.get("cpu_info"),
                         "host_gpu": rec.get("gpu_info"), "model_name": rec.get("model_type"),
                         "file_bytes": None, "n_params": rec.get("model_n_params")})
        return rows
    text = _jsonl_log_text(text) or text
    kv = KV_TYPES_RE.search(text)
    k = cache_k or (kv.group(1) if kv else "f16")
    v = cache_v or (kv.group(2) if kv else "f16")
    label = weights or path.stem
    ctx_m = CTX_RE.search(text)
    ctx = int(ctx_m.group(1)) if ctx_m else None
    ident = {**common, "weights": label, "type_k": k, "type_v": v, "ctx": ctx,
             "cell_id": f"{label}|{k}|{v}|c{ctx or 0}", "test": ""}
    fmt = tt.detect(text)
    if fmt is not None:  # --hellaswag / --winogrande / --multiple-choice: each task's answer, to pair
        try:
            result = tt.from_log(fmt, text)
        except ToolFailed as exc:
            raise UsageError(f"{path}: {exc.reason}; nothing imported") from None
        return [{**ident, **result, "measurement": "task", "test": task or fmt}]
    stats = tp.parse_kld(text)
    if "kld_mean" in stats:
        stats.pop("unparsed", None)
        problem = tp.stats_problem(stats)
        if problem:  # a log cut short, or a run that printed nan: never stored as a measurement
            raise UsageError(f"{path}: {problem}; a complete llama-perplexity --kl-divergence log ends with "
                             "'Same top p: X ± Y %'; nothing imported")
        return [{**ident, **stats, "measurement": "kld"}]
    final = tp.parse_final(text)
    if final is not None and not all(map(math.isfinite, final)):
        raise UsageError(f"{path}: a non-finite PPL ({final[0]} ± {final[1]}); nothing imported")
    if final is not None:
        return [{**ident, "measurement": "ppl", "ppl_q": final[0], "ppl_q_err": final[1]}]
    reason = tp.failure_reason(text)
    if reason:
        return [{**ident, "measurement": "kld", "status": "failed", "reason": reason}]
    raise UsageError(f"{path}: neither llama-perplexity output (KLD statistics, a final PPL, a task table) "
                     "nor llama-bench json/jsonl")
