"""llama-imatrix: compute an importance matrix from a calibration text. Unlike perplexity it exits 1 on errors."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.errors import ToolFailed
from orchestrator.tools import File, NUM, tail, threads_args

FINAL_RE = re.compile(rf"Final estimate: PPL = ({NUM}) \+/- ({NUM})")
SHORT_RE = re.compile(r"you need at least (\d+) tokens|tokenizes to only (\d+) tokens")


def argv(exe: File, model: File, corpus: File, out: File, *, ctx: int, chunks: int | None,
         gpu_layers: int, threads: int | None) -> list:
    return [exe, "-m", model, "-f", corpus, "-o", out, "-c", str(ctx),
            *(["--chunks", str(chunks)] if chunks else []), "-ngl", str(gpu_layers),
            *threads_args(threads)]


def judge(rc: int, stdout: str, stderr: str, out: Path) -> dict:
    text = stdout + "\n" + stderr
    if rc != 0 or not out.exists() or out.stat().st_size == 0:
        m = SHORT_RE.search(text)
        reason = "calibration text too short for this context" if m else f"imatrix failed (rc {rc})"
        raise ToolFailed(reason, stderr_tail=tail(text))
    with open(out, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ToolFailed("imatrix output is not a GGUF file", stderr_tail=tail(stderr))
    m = FINAL_RE.search(text)
    return {"calibration_ppl": float(m.group(1)) if m else None}
