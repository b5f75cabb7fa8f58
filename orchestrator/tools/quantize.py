"""llama-quantize: argv, the size/time lines it prints, the type list from --help."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.errors import ToolFailed
from orchestrator.tools import File, NUM, first_failure, tail

TOTALS_RE = re.compile(rf"(model|quant) size\s*=\s*({NUM}) (MiB|MB)(?: \(({NUM}) BPW\))?")
TIME_RE = re.compile(rf"(quantize|total) time =\s*({NUM}) ms")
FALLBACK_RE = re.compile(r"WARNING: (\d+) of (\d+) tensor\(s\) required fallback quantization")
OVERRIDE_RE = re.compile(r"applying manual override")
HELP_TYPE_RE = re.compile(r"^\s+(?:\d+\s+or\s+)?([A-Z][A-Z0-9_]+)\s+:", re.M)
FAILURES = [
    (re.compile(r"requires an importance matrix|requires an imatrix"), "this type needs an imatrix"),
    (re.compile(r"requantizing from type \S+ is disabled"), "input is quantized (needs --allow-requantize)"),
    (re.compile(r"invalid ftype '([^']*)'"), "unknown quant type"),
    (re.compile(r"failed to quantize: (.*)"), "quantization failed"),
    (re.compile(r"failed to open GGUF file|failed to load model"), "input model failed to load"),
    (re.compile(r"No space left on device"), "disk full"),
]


def argv(exe: File, src: File, out: File, qtype: str, *, imatrix: File | None = None,
         tensor_types: dict[str, str] | None = None, allow_requantize: bool = False,
         threads: int | None = None, extra: list[str] | None = None) -> list:
    flags: list = ["--allow-requantize"] if allow_requantize else []
    if imatrix is not None:
        flags += ["--imatrix", imatrix]
    for pattern, ggml_type in (tensor_types or {}).items():
        flags += ["--tensor-type", f"{pattern}={ggml_type}"]
    flags += list(extra or [])
    return [exe, *flags, src, out, qtype, *([str(threads)] if threads else [])]


def parse(text: str) -> dict:
    out: dict = {}
    for kind, size, unit, bpw in TOTALS_RE.findall(text):
        mib = float(size) * (1.0 if unit == "MiB" else 1e6 / 2**20)
        out[f"{kind}_mib"] = mib
        if bpw:
            out[f"{kind}_bpw"] = float(bpw)
    for kind, ms in TIME_RE.findall(text):
        out[f"{kind}_ms"] = float(ms)
    m = FALLBACK_RE.search(text)
    out["fallback_tensors"] = int(m.group(1)) if m else 0
    out["overrides_applied"] = len(OVERRIDE_RE.findall(text))
    return out


def parse_help(text: str) -> list:
    """The type names a build accepts, from `llama-quantize --help` (which exits 1)."""
    return [t.upper() for t in HELP_TYPE_RE.findall(text)]


def judge(rc: int, stdout: str, stderr: str, out: Path) -> dict:
    text = stdout + "\n" + stderr
    stats = parse(text)
    if rc != 0 or "quant_mib" not in stats:
        reason = first_failure(text, FAILURES)
        raise ToolFailed(reason or f"no size summary (rc {rc})", stderr_tail=tail(stderr))
    try:
        with open(out, "rb") as f:
            magic = f.read(4)
    except OSError:
        magic = b""
    if magic != b"GGUF":
        raise ToolFailed("output is not a GGUF file", stderr_tail=tail(stderr))
    return stats
