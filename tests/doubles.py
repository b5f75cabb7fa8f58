"""Tool doubles: programs that behave like llama-quantize, llama-perplexity, llama-bench and llama-imatrix
as far as the coordinator can tell, so the real runner and scheduler can be driven on boxes this
machine does not have (2, 4, 8 GPUs). Each double

- lasts a set time per job kind (QS_DOUBLE_SECONDS, JSON {kind: seconds}); jobs on the same simulated
  GPU (its CUDA_VISIBLE_DEVICES) share its speed, m jobs each progressing at 1/m, as on a real device;
- prints output recorded from the real tools (tests/fixtures/0c1e570-cpu-gnu12), so the real judges
  accept it: the base and KLD outputs come from one run, so their PPL(base) agree;
- writes its artifact: a copy of a small real GGUF for llama-quantize, a logits file with a true header
  and the exact size (sparse) for --kl-divergence-base;
- appends "kind device start end pid" to QS_DOUBLE_LOG, from which the bench measures the schedule.

`install(bin_dir)` writes the four executables; `environ(...)` the variables they read.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys
import time
from pathlib import Path

FIX = Path(__file__).parent / "fixtures" / "0c1e570-cpu-gnu12"
TOOLS = ("llama-quantize", "llama-perplexity", "llama-bench", "llama-imatrix")
TICK = 0.005
DOUBLE_PPL_BASE = 13.270085  # the recorded KLD run's Mean PPL(base) (fixtures ppl_kld.stdout)


def install(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        exe = bin_dir / tool
        # the wrapper notes when the tool was started: a double's time includes its own start, as a tool's does
        exe.write_text(f"#!/bin/sh\nexec {sys.executable} -S {Path(__file__).resolve()} {tool} \"$(date +%s.%N)\" "
                       "\"$@\"\n")
        exe.chmod(0o755)
    return bin_dir


def environ(seconds: dict[str, float], log: Path, share_dir: Path, n_vocab: int, gguf: Path) -> dict[str, str]:
    return {"QS_DOUBLE_SECONDS": json.dumps(seconds), "QS_DOUBLE_LOG": str(log), "QS_DOUBLE_SHARE": str(share_dir),
            "QS_DOUBLE_VOCAB": str(n_vocab), "QS_DOUBLE_GGUF": str(gguf)}


def written(w) -> None:
    """A gguf.GGUFWriter's file, written whole and closed."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny_gguf(path: Path) -> Path:
    """A small real GGUF (one tensor): what the doubles of llama-quantize hand out as their output, and a
    stand-in model for tests that need a file, not its weights."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("double")
    w.add_tensor("token_embd.weight", np.zeros((8, 16), dtype=np.float32))
    written(w)
    return path


def big_vocab_gguf(path, n_vocab=262_144):
    """A GGUF the size of Gemma 3's tokenizer (262k tokens, scores, types, merges) with quantized and
    plain tensors: what a description must read quickly."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_name("big vocab")
    w.add_file_type(15)
    w.add_context_length(32768)
    w.add_block_count(2)
    w.add_sliding_window(512)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(n_vocab)])
    w.add_token_scores([float(i) for i in range(n_vocab)])
    w.add_token_types([1] * n_vocab)
    w.add_token_merges([f"t {i}" for i in range(n_vocab // 2)])
    w.add_array("gemma3.attention.sliding_window_pattern", [True, False, True])
    w.add_tensor("token_embd.weight", np.zeros((64, 256), dtype=np.float16))
    q = gguf.quants.quantize(np.ones((32, 256), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_q.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(256, dtype=np.float32))
    written(w)
    return path


def _opt(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def _kind(tool: str, argv: list[str]) -> str:
    if tool == "llama-quantize":
        return "reference" if argv[-1].upper() in ("F16", "BF16", "F32") or argv[-2].upper() in ("F16", "BF16") \
            else "quantize"
    if tool == "llama-perplexity":
        return "kld" if "--kl-divergence" in argv else "base"
    return "bench" if tool == "llama-bench" else "imatrix"


def _work(seconds: float, device: str, start: float) -> tuple[float, float]:
    """Last `seconds` of device time since `start`; jobs on one device share it."""
    seconds -= time.time() - start
    if device == "cpu":
        time.sleep(max(0.0, seconds))
        return start, time.time()
    here = Path(os.environ["QS_DOUBLE_SHARE"]) / device
    here.mkdir(parents=True, exist_ok=True)
    me = here / str(os.getpid())
    me.touch()
    try:
        left, last = seconds, time.monotonic()
        while left > 0:
            time.sleep(min(TICK, left))
            now = time.monotonic()
            left -= (now - last) / max(1, sum(1 for _ in here.iterdir()))
            last = now
    finally:
        me.unlink()
    return start, time.time()


def _replay(name: str) -> int:
    sys.stdout.write((FIX / f"{name}.stdout").read_text())
    sys.stderr.write((FIX / f"{name}.stderr").read_text())
    return 0


def _quantize(argv: list[str]) -> int:
    qtype = len(argv) - (2 if argv[-1].isdigit() else 1)  # SRC OUT TYPE [THREADS]
    shutil.copyfile(os.environ["QS_DOUBLE_GGUF"], argv[qtype - 1])
    return _replay("quantize_f16")


def _base(argv: list[str]) -> int:
    n_ctx, n_vocab = int(_opt(argv, "-c", "512")), int(os.environ["QS_DOUBLE_VOCAB"])
    n_chunk = int(_opt(argv, "--chunks", "1"))
    rows = n_ctx - 1 - n_ctx // 2
    size = 20 + 4 * n_chunk * n_ctx + n_chunk * rows * (2 * ((n_vocab + 1) // 2) + 4) * 2
    row_bytes = (2 * ((n_vocab + 1) // 2) + 4) * 2
    # every row says the scored token's log-prob is -ln(PPL) (scale 0, min -ln PPL): the reference PPL the
    # file holds is the recorded KLD run's PPL(base), which the judge checks it against
    row_head = struct.pack("<ff", 0.0, -math.log(DOUBLE_PPL_BASE))
    with open(_opt(argv, "--kl-divergence-base"), "wb") as f:
        f.write(b"_logits_" + struct.pack("<iii", n_ctx, n_vocab, n_chunk))
        for r in range(n_chunk * rows):
            f.seek(20 + 4 * n_chunk * n_ctx + r * row_bytes)
            f.write(row_head)
        f.truncate(size)
    return _replay("ppl_base")


def _bench(argv: list[str]) -> int:
    tests = len((_opt(argv, "-d", "0") or "0").split(",")) * ((_opt(argv, "-p", "512") != "0")
                                                                + (_opt(argv, "-n", "128") != "0"))
    lines = [ln for ln in (FIX / "bench_jsonl.stdout").read_text().splitlines() if ln.strip()]
    sys.stdout.write("".join(lines[i % len(lines)] + "\n" for i in range(tests)))
    return 0


def main(tool: str, started: str, argv: list[str]) -> int:
    kind = _kind(tool, argv)
    device = os.environ.get("CUDA_VISIBLE_DEVICES", "cpu")
    start, end = _work(json.loads(os.environ["QS_DOUBLE_SECONDS"]).get(kind, 0.1), device, float(started))
    with open(os.environ["QS_DOUBLE_LOG"], "a") as log:
        log.write(f"{kind} {device} {start:.4f} {end:.4f} {os.getpid()}\n")
    if kind in ("reference", "quantize"):
        return _quantize(argv)
    if kind == "base":
        return _base(argv)
    if kind == "kld":
        return _replay("ppl_kld")
    if kind == "bench":
        return _bench(argv)
    raise SystemExit(f"{tool}: the double has no imatrix output recorded")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))


class Sweep:
    """The real runner on a simulated box of `n_gpus` GPUs with these doubles as its tools."""

    def __init__(self, recipe: Path, root: Path, n_gpus: int, seconds: dict[str, float], gib: int = 80):
        from dataclasses import replace

        from orchestrator.execute import devices
        from orchestrator.plan import planner
        from orchestrator.inputs import prepare
        from orchestrator.tools import toolchain
        from orchestrator.execute.scheduler import Device
        from orchestrator.workspace import Workspace

        root.mkdir(parents=True, exist_ok=True)
        self.ws = Workspace(root / "ws")
        self.log = root / "doubles.log"
        self.tc = replace(toolchain.find(), bin_dir=install(root / "bin"))
        self.plan = planner.build(prepare.inputs(recipe, self.ws, self.tc, fetch=True))
        self.env = environ(seconds, self.log, root / "share", self.plan.inputs.source_info.n_vocab,
                           tiny_gguf(root / "tiny.gguf"))
        self.found = [devices.Found(Device(f"GPU-sim-{i}", "simulated GPU", gib * 2**30, gib * 2**30, "cuda"), i, "sim")
                      for i in range(n_gpus)] + [devices.find()[-1]]

    def run(self, **kw):
        from orchestrator.execute.coordinator import Coordinator
        from orchestrator.results.store import Store

        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            return Coordinator(self.plan, self.ws, Store(self.ws.store_path), self.tc, quiet=True, found=self.found,
                          **kw).run()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def spans(self) -> list[tuple[str, str, float, float]]:
        """(kind, device, start, end) of every tool run, times from the first start."""
        rows = [ln.split() for ln in self.log.read_text().splitlines()]
        t0 = min(float(r[2]) for r in rows)
        return [(r[0], r[1], float(r[2]) - t0, float(r[3]) - t0) for r in rows]
