"""Recipe -> cells -> jobs with content keys: each registered job kind plans its jobs, in registry order.
Pure: no tool runs, no writes.

A job's key is a tagged hash over everything that can change its numbers: input content (file hashes, or
the keys of the jobs that make them), the toolchain identity and every flag. A key that the store holds
as done is never run again.
"""

from __future__ import annotations

from itertools import product

from orchestrator.jobs import KINDS
from orchestrator.jobs.kind import PlanState
from orchestrator.plan.graph import Cell, Plan, PlanInputs, source_key


def build(inp: PlanInputs) -> Plan:
    r = inp.recipe
    cells = [Cell(w.label, k, v, ctx) for ctx in r.evaluation.contexts
             for w, (k, v) in product(r.weights, r.cache.expanded())]
    st = PlanState(inp, source_key(inp.source_sha), cells)
    st.files[st.source] = inp.source_path
    for k in KINDS.values():
        k.plan(st)
    order = list(KINDS)
    jobs = sorted(st.jobs, key=lambda j: order.index(j.kind))  # stable, topological: kinds depend leftwards
    measured = tuple(j for j in jobs if j.cell is not None)
    # weights entries with the same content under other labels share their jobs: each runs, and counts, once
    seen: set[str] = set()
    jobs = [j for j in jobs if not (j.key in seen or seen.add(j.key))]  # type: ignore[func-returns-value]
    stems = {j.key: j.params.stem for j in jobs if KINDS[j.kind].makes == "model"}
    return Plan(inp, tuple(jobs), tuple(cells), dict(st.model_keys), stems, measured, dict(st.files),
                dict(st.streamed))
