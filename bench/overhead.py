"""`make bench`: what quantsweep costs on top of the tools, on a small real matrix.

Prints overhead = sweep wall time ÷ Σ tool wall times on one slot (target ≤ 1.02, the artifacts' sha256
included) and the wall time of a re-run of the finished recipe (target < 1 s, 0 tools run).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


from tests.helpers import small_recipe
from bench import scratch

from orchestrator import commands
from orchestrator.inputs import hub
from orchestrator.recipe import model as recipe
from orchestrator.results.store import Store
from orchestrator.output import Output

REPO = Path(__file__).parents[1]


def main() -> int:
    model = hub.fetch_model(recipe.load(REPO / "recipes" / "demo.yaml").model, REPO)
    tmp = scratch.folder("qs-bench-")
    path = small_recipe(tmp, model, name="bench", ctx=128, chunks=4, weights=("Q8_0", "Q4_K_M", "Q2_K"),
                        pairs=(("f16", "f16"), ("q8_0", "q8_0")))
    ws = tmp / "ws"
    quiet = Output(quiet=True, write=lambda _: None)
    t0 = time.monotonic()
    commands.run(path, ws, None, False, True, quiet)
    wall = time.monotonic() - t0
    run = Store(ws / "store.sqlite").runs().iloc[-1]
    # the re-run as a user meets it: a new `quantsweep run` process, interpreter start-up included
    t1 = time.monotonic()
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--workspace", str(ws), "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    rerun = time.monotonic() - t1
    rerun_jobs = int(Store(ws / "store.sqlite").runs().iloc[-1].n_jobs_run)
    overhead = wall / run.tool_wall_s
    results = Store(ws / "store.sqlite").db.execute("SELECT result_json FROM jobs WHERE result_json IS NOT NULL")
    made = [json.loads(r) for (r,) in results]
    hashing = sum(r.get("hash_s", 0.0) for r in made)
    describing = sum(r.get("describe_s", 0.0) for r in made)
    print(f"matrix: 3 weights x 2 K/V pairs, ctx 128, 4 chunks; {int(run.n_jobs_run)} tool runs")
    print(f"sweep wall {wall:.2f}s, sum of tool walls {run.tool_wall_s:.2f}s")
    print(f"overhead = {overhead:.4f}  (target <= 1.02)  {'OK' if overhead <= 1.02 else 'OVER'}")
    print(f"  provenance of the artifacts made: their sha256 {hashing:.2f}s (hashed beside the next tool), "
          f"their metadata {describing:.2f}s; {1000 * (wall - run.tool_wall_s) / run.n_jobs_run:.0f} ms a job "
          "in all")
    print(f"re-run of the finished recipe (a new process): {rerun:.2f}s, {rerun_jobs} tools run  (target < 1 s, 0)  "
          f"{'OK' if rerun < 1 and rerun_jobs == 0 else 'OVER'}")
    describe_time()
    return 0


def describe_time() -> None:
    """A model's description (its tensor table and keys) against gguf-py's full reader, on a GGUF with
    Gemma 3's 262k vocabulary."""
    from gguf import GGUFReader

    from tests.doubles import big_vocab_gguf
    from orchestrator.inputs import gguf_info

    path = big_vocab_gguf(scratch.folder("qs-bench-gguf-") / "big.gguf")
    t0 = time.perf_counter()
    gguf_info._read(path)
    lean = time.perf_counter() - t0
    t0 = time.perf_counter()
    GGUFReader(path)
    full = time.perf_counter() - t0
    print(f"describe a 262k-vocabulary GGUF: {lean:.3f}s (gguf-py's reader alone {full:.2f}s, "
          f"{full / lean:.0f}x)  (target <= 1 s)  {'OK' if lean <= 1 else 'OVER'}")


if __name__ == "__main__":
    sys.exit(main())
