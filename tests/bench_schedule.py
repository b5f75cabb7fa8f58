"""`make bench`, scheduling part: the real scheduler on simulated boxes of 1, 2, 4 and 8 GPUs × 24 and
80 GiB, for the `recipes/gpu.yaml` matrix, each job lasting what it lasted on the H100 sweep recorded in
reports/h100/store.sqlite (per job kind, mean). Jobs sharing a GPU share its speed. Prints
makespan ÷ lower bound (target ≤ 1.10) and the speed-up over one GPU (target ≥ 0.9·N)."""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

from orchestrator import jobspec, plan as planmod, prepare, simulate, toolchain
from orchestrator.runner import thread_policy
from orchestrator.scheduler import Device, Inventory
from orchestrator.workspace import Workspace

REPO = Path(__file__).parents[1]
GIB = 2**30


def h100_timings() -> dict[str, float]:
    db = sqlite3.connect(f"{(REPO / 'reports' / 'h100' / 'store.sqlite').as_uri()}?mode=ro&immutable=1", uri=True)
    return {k: float(w) for k, w in db.execute("SELECT kind, avg(wall_s) FROM jobs WHERE status='done' GROUP BY kind")}


def main() -> int:
    tc = toolchain.find()
    ws = Workspace(Path(tempfile.mkdtemp(prefix="qs-sched-")))
    p = planmod.build(prepare.inputs(REPO / "recipes" / "gpu.yaml", ws, tc, fetch=True))
    secs = h100_timings()
    jobs = list(p.jobs)
    print(f"recipes/gpu.yaml: {len(jobs)} jobs; seconds per job from the H100 sweep: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(secs.items())))
    print(f"{'GPUs':>4} {'GiB':>4} {'makespan s':>10} {'lower bound s':>13} {'ratio':>6} {'speed-up':>8} {'≥0.9·N':>6}")
    worst = 0.0
    for gib in (24, 80):
        base = None
        for n in (1, 2, 4, 8):
            inv = Inventory(tuple(Device(f"GPU-{i}", "sim", gib * GIB, gib * GIB, "cuda") for i in range(n)), 16)
            sched = simulate.run(jobs, lambda j: jobspec.build(j, p, {}, thread_policy(inv)), inv,
                                 lambda s: secs.get(s.kind, 1.0))
            bound = max(simulate.lower_bound(jobs, lambda j: secs.get(j.kind, 1.0) if j.kind != "quantize" else 0, n),
                        simulate.lower_bound(jobs, lambda j: secs.get(j.kind, 1.0), 10**6))
            base = base or sched.makespan
            ratio, speedup = sched.makespan / bound, base / sched.makespan
            worst = max(worst, ratio)
            print(f"{n:>4} {gib:>4} {sched.makespan:>10.1f} {bound:>13.1f} {ratio:>6.3f} {speedup:>8.2f} "
                  f"{'OK' if speedup >= 0.9 * n else 'no':>6}")
    print(f"worst makespan / lower bound = {worst:.3f}  (target <= 1.10)  {'OK' if worst <= 1.10 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
