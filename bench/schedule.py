"""`make bench`, scheduling part: the real scheduler on simulated boxes of 1, 2, 4 and 8 GPUs × 24 and
80 GiB, for the `recipes/gpu.yaml` matrix, each job lasting what it lasted on the H100 sweep recorded in
reports/h100/store.sqlite (per job kind, mean). Jobs sharing a GPU share its speed. Prints
makespan ÷ lower bound (target ≤ 1.10) and the speed-up over one GPU (target ≥ 0.9·N).

Then the same boxes once more with the real runner (its threads, processes, judges and store) driving
tool doubles (tests/doubles.py) that last those timings × 0.1: what the clock-driven schedule leaves
out (process start, our own time per job) shows as the gap between "makespan" and "simulated".
`--no-doubles` skips that part (about a minute)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from orchestrator import jobs as jobkinds
from orchestrator.jobs import spec as jobspec
from orchestrator.plan import planner, simulate
from orchestrator.inputs import prepare
from orchestrator.tools import toolchain
from orchestrator.execute.local import thread_policy
from orchestrator.execute.scheduler import Device, Inventory
from bench import scratch
from orchestrator.workspace import Workspace

REPO = Path(__file__).parents[1]

GIB = 2**30


def h100_timings() -> dict[str, float]:
    db = sqlite3.connect(f"{(REPO / 'reports' / 'h100' / 'store.sqlite').as_uri()}?mode=ro&immutable=1", uri=True)
    return {k: float(w) for k, w in db.execute("SELECT kind, avg(wall_s) FROM jobs WHERE status='done' GROUP BY kind")}


def _isolated(spec: jobspec.JobSpec, isolation: str) -> jobspec.JobSpec:
    """A bench's spec as `bench.isolation: device` would make it (the host may work beside it)."""
    if spec.kind != "bench" or isolation == "host":
        return spec
    return spec.model_copy(update={"resources": spec.resources.model_copy(update={"quiet_host": False})})


def main() -> int:
    tc = toolchain.find()
    ws = Workspace(scratch.folder("qs-sched-"))
    p = planner.build(prepare.inputs(REPO / "recipes" / "gpu.yaml", ws, tc, fetch=True))
    secs = h100_timings()
    jobs = list(p.jobs)
    print(f"recipes/gpu.yaml: {len(jobs)} jobs; seconds per job from the H100 sweep: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(secs.items())))
    print(f"{'GPUs':>4} {'GiB':>4} {'isolation':>9} {'makespan s':>10} {'lower bound s':>13} {'ratio':>6} "
          f"{'speed-up':>8} {'ceiling':>7} {'≥0.9·N':>6}")
    worst = 0.0
    for gib, isolation in ((24, "host"), (80, "host"), (80, "device")):
        base = None
        for n in (1, 2, 4, 8):
            inv = Inventory(tuple(Device(f"GPU-{i}", "sim", gib * GIB, gib * GIB, "cuda") for i in range(n)), 16)
            specs = {j.key: _isolated(jobkinds.build_spec(j, p, {}, thread_policy(inv)), isolation) for j in jobs}
            sched = simulate.run(jobs, lambda j, specs=specs: specs[j.key], inv, lambda s: secs.get(s.kind, 1.0))
            bound = simulate.lower_bound(jobs, lambda j: secs.get(j.kind, 1.0), n,
                                         lambda j, specs=specs: specs[j.key].resources.where == "device")
            base = base or sched.makespan
            ratio, speedup = sched.makespan / bound, base / sched.makespan
            worst = max(worst, ratio)
            # ceiling: the speed-up of a schedule that met the lower bound (the serial start, the reference
            # and the first quantization, bounds it: Amdahl)
            print(f"{n:>4} {gib:>4} {isolation:>9} {sched.makespan:>10.1f} {bound:>13.1f} {ratio:>6.3f} "
                  f"{speedup:>8.2f} {base / bound:>7.2f} {'OK' if speedup >= 0.9 * n else 'no':>6}")
    print(f"worst makespan / lower bound = {worst:.3f}  (target <= 1.10)  {'OK' if worst <= 1.10 else 'OVER'}")
    if "--no-doubles" not in sys.argv:
        doubles_table(jobs, secs)
    return 0


def doubles_table(jobs, secs: dict[str, float], scale: float = 0.1) -> None:
    """The same matrix run by the real runner (threads, processes, judges, store) with tool doubles that
    last the H100 timings × `scale` and share a simulated GPU's speed."""
    from tests import doubles

    print(f"\nreal runner + tool doubles (H100 timings x {scale}), 80 GiB GPUs:")
    print(f"{'GPUs':>4} {'makespan s':>10} {'simulated s':>11} {'lower bound s':>13} {'ratio':>6} {'speed-up':>8} "
          f"{'GPU busy':>8} {'most/GPU':>8} {'bench∥quantize':>14}")
    base = None
    for n in (1, 2, 4, 8):
        sweep = doubles.Sweep(REPO / "recipes" / "gpu.yaml", scratch.folder("qs-doubles-"), n,
                              {k: v * scale for k, v in secs.items()})
        summary = sweep.run()
        assert summary.jobs_run == len(jobs) and not summary.failed, summary.failed
        spans = sweep.spans()
        makespan = max(e for *_, e in spans)
        inv = Inventory(tuple(f.device for f in sweep.found[:-1]), 16)
        specs = {j.key: jobkinds.build_spec(j, sweep.plan, {}, thread_policy(inv)) for j in jobs}
        sim = simulate.run(jobs, lambda j, specs=specs: specs[j.key], inv,
                           lambda sp: secs.get(sp.kind, 1.0) * scale).makespan
        bound = simulate.lower_bound(jobs, lambda j: secs.get(j.kind, 1.0) * scale, n,
                                     lambda j, specs=specs: specs[j.key].resources.where == "device")
        gpu = [sp for sp in spans if sp[1] != "cpu"]
        busy = sum(simulate.covered([(a, b) for _, d, a, b in gpu if d == dev])
                   for dev in {d for _, d, _, _ in gpu})
        most = max(sum(1 for _, d2, a2, b2 in gpu if d2 == d and a2 <= a < b2) for _, d, a, _ in gpu)
        quant = [(a, b) for k, _, a, b in spans if k in ("quantize", "reference")]
        clash = sum(1 for k, _, a, b in spans if k == "bench" and any(a < qb and qa < b for qa, qb in quant))
        base = base or makespan
        print(f"{n:>4} {makespan:>10.2f} {sim:>11.2f} {bound:>13.2f} {makespan / bound:>6.3f} {base / makespan:>8.2f} "
              f"{busy / (n * makespan):>8.1%} {most:>8} {clash:>14}")


if __name__ == "__main__":
    sys.exit(main())
