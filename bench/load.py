"""`make bench`, load part: a store of 10,000 result cells, made from the real rows of the H100 sweep
(reports/h100/store.sqlite) with varied weights labels, and the time of each reading command's own
work on it (in this process, interpreter start-up excluded): report, recommend, compare, export
(target < 2 s each). Then the plan of a 1,000-cell recipe (target < 1 s)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from orchestrator import commands
from orchestrator.plan import planner
from orchestrator.inputs import prepare
from orchestrator.tools import toolchain
from orchestrator.results.store import Store
from orchestrator.workspace import Workspace
from orchestrator.output import Output

from bench import scratch

REPO = Path(__file__).parents[1]
CELLS = 10_000


def big_store(ws: Path, cells: int = CELLS) -> int:
    src = Store.read_only(REPO / "reports" / "h100" / "store.sqlite").results("h100")
    src = src.drop(columns=["id"])
    per = src.cell_id.nunique()
    rows = []
    for i in range(-(-cells // per)):
        variant = src.copy()
        variant["cell_id"] = variant.cell_id + f"-v{i}"
        variant["weights"] = variant.weights + ("" if i == 0 else f" v{i}")
        rows.extend(variant.to_dict("records"))
    store = Store(ws / "store.sqlite")
    store.put_results(rows)
    n = store.db.execute("SELECT count(DISTINCT cell_id) FROM results").fetchone()[0]
    store.db.close()
    return n


def timed(label: str, fn) -> float:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(f"{label:<34} {dt:6.2f} s  (target < 2 s)  {'OK' if dt < 2 else 'OVER'}")
    return dt


def main() -> int:
    tmp = scratch.folder("qs-load-")
    ws = tmp / "ws"
    t0 = time.perf_counter()
    n = big_store(ws)
    print(f"store: {n} cells, {(ws / 'store.sqlite').stat().st_size / 2**20:.0f} MiB "
          f"(made in {time.perf_counter() - t0:.1f} s)")
    quiet = Output(quiet=True, write=lambda _: None)
    import matplotlib.pyplot  # noqa: F401  (imports are start-up, not a command's own work)
    import pyarrow.parquet  # noqa: F401
    from orchestrator.results import snapshot

    store = Store(ws / "store.sqlite")
    t0 = time.perf_counter()
    snapshot.table(store)  # what `run` does once it has written its results
    copy = time.perf_counter() - t0
    copies = list(snapshot.folder().glob(f"{store.results_token()}.parquet"))
    print(f"columnar copy of the results, made by the run that wrote them: {copy:.2f} s "
          f"({sum(p.stat().st_size for p in copies) / 2**20:.1f} MiB)")
    store.close()
    for name, fn in (  # each prints its own line
            ("report (tables, plots, html)", lambda: commands.report("h100", ws, tmp / "report", quiet)),
            ("recommend --vram 24GiB --ctx 4096",
             lambda: commands.recommend("h100", ws, "24GiB", "4096", None, None, quiet)),
            ("compare h100 h100", lambda: commands.compare("h100", "h100", ws, quiet)),
            ("export csv", lambda: commands.export(ws, "csv", tmp / "cells.csv", None, quiet))):
        timed(name, fn)
    t0 = time.perf_counter()
    commands.results("h100", ws)
    print(f"  of which reading one recipe's 10,000 cells: {time.perf_counter() - t0:.2f} s (compare reads two)")
    for p in copies:
        p.unlink()
    t0 = time.perf_counter()
    commands.report("h100", ws, tmp / "report-cold", quiet)
    print(f"  report without the copy (e.g. a store changed by hand since): {time.perf_counter() - t0:.2f} s")
    demo = tmp / "demo-ws"
    demo.mkdir()
    shutil.copyfile(REPO / "tests" / "fixtures" / "stores" / "demo-v3.sqlite", demo / "store.sqlite")
    t0 = time.perf_counter()
    commands.report("demo", demo, tmp / "demo-report", quiet)
    print(f"  for scale, the 18-cell demo report: {time.perf_counter() - t0:.2f} s (its four figures, "
          "PNG and SVG, are most of both)")
    tc = toolchain.find()
    text = (REPO / "recipes" / "gpu.yaml").read_text()
    weights = "[" + ", ".join(f"{{type: Q4_K_M, name: w{i}}}" for i in range(40)) + "]"
    big = tmp / "big.yaml"
    big.write_text(text.replace("weights: [Q8_0, Q6_K, Q5_K_M, Q4_K_M, IQ4_XS, Q3_K_M, Q2_K]", f"weights: {weights}")
                   .replace("ctx: 2048", "ctx: [512, 1024, 2048, 4096, 8192]"))
    pws = Workspace(tmp / "plan-ws")
    inputs = prepare.inputs(big, pws, tc, fetch=True)
    t0 = time.perf_counter()
    p = planner.build(inputs)
    dt = time.perf_counter() - t0
    print(f"plan of {len(p.cells)} cells ({len(p.jobs)} jobs)      {dt:6.2f} s  (target < 1 s)  "
          f"{'OK' if dt < 1 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
