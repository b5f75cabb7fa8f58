"""`recommend` and `compare` as text: plain tables a terminal and a markdown page both read well."""

from __future__ import annotations

import pandas as pd

from orchestrator.plan import memory
from orchestrator.report.analysis import BENCH_CV_MAX, COMPARED, SPEEDS, Z, Recommendation, records
from orchestrator.report.tables import num, pm


def flagged(v) -> bool:
    """A yes/no column that may hold None or NaN where nothing was measured."""
    return v is not None and not pd.isna(v) and bool(v)


def text_table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(header), fmt(["-" * w for w in widths]), *[fmt(r) for r in rows]]


def recommend_lines(name: str, rec: Recommendation, budget, ctx: int | None, max_kld: float | None,
                    limit: int = 12, reserve_why: str = "--reserve") -> list[str]:
    ask = f"ctx {ctx}" if ctx is not None else "the longest context"
    if max_kld is not None:
        ask += f", KLD ≤ {max_kld}"
    lines = [f"{name}: {memory.gib(budget.vram)} ({memory.gib(budget.reserve)} kept for the runtime: {reserve_why}), "
             f"{ask}", ""]
    t = rec.table
    if t.empty:
        lines.append("(no measured cells)")
    else:
        unit, scale, digits = ("GiB", 2**30, 2) if t.mem_total.max() >= 4 * 2**30 else ("MiB", 2**20, 0)
        header = ["rank", "weights", "K/V", "KLD", "same top", f"tensors {unit}", f"K/V {unit}", f"total {unit}"]
        header += ["ctx reached"] if ctx is None else []
        header += ["tg t/s"]
        task = "task_accuracy" in t
        header += ["task acc"] if task else []
        rows = []
        for _, r in t.head(limit).iterrows():
            row = [r.get("rank", ""), r.weights, f"{r.type_k}/{r.type_v}", pm(r.kld_mean, r.kld_mean_err, 6),
                   pm(r.same_top, r.same_top_err, 2, " %"),
                   *(num(b / scale, digits) for b in (r.mem_weights, r.mem_kv, r.mem_total))]
            row += [str(int(r.ctx_reached))] if ctx is None else []
            unsteady = " (unsteady)" if flagged(r.get("tg_unsteady")) else ""
            row += [pm(r.get("tg_ts"), r.get("tg_ts_std"), 1) + unsteady]
            if task:
                changed = " (changed)" if flagged(r.get("task_changed")) else ""
                row += ["—" if pd.isna(r.task_accuracy) else f"{100 * r.task_accuracy:.1f} %{changed}"]
            rows.append(row)
        lines += text_table(rows, header)
        if len(t) > limit:
            lines.append(f"… {len(t) - limit} more")
    lines += ["", f"Verdict: {rec.verdict}"]
    if rec.runner_up is not None:
        r = rec.runner_up
        lines.append(f"Runner-up with the other strategy ({r.strategy}): {r.weights} + {r.type_k}/{r.type_v}, "
                     f"KLD {r.kld_mean:.6f} ± {r.kld_mean_err:.6f}, {memory.gib(r.mem_total)}")
    if rec.suggestions:
        lines += ["", "Cells to add to answer better:"] + [f"  - {s}" for s in rec.suggestions]
    lines += ["", *[f"Note: {n}" for n in rec.notes],
              f"Note: ranks within {Z:g}·√(σ₁²+σ₂²) of each other are ties (=N); total = tensors (the weights' "
              "tensor data, as loaded; the GGUF file also holds metadata and the vocabulary) + K/V cache + compute "
              "allowance, flash attention on"]
    if not t.empty and any(flagged(v) for v in t.head(limit).get("tg_unsteady", [])):
        lines.append(f"Note: (unsteady) marks a speed whose spread over the repetitions exceeds {BENCH_CV_MAX:.0%} of "
                     "its mean (measured beside other work?): `quantsweep run RECIPE --rerun bench` on a quiet "
                     "machine measures it again")
    return lines


def compare_lines(a_name: str, b_name: str, c: pd.DataFrame, differences: list[str] = (),
                  tasks: pd.DataFrame | None = None) -> list[str]:
    lines = [f"compare A = {a_name}, B = {b_name}: B − A per cell; ± = {Z:g}·√(σA² + σB²); "
             "'*' marks a difference larger than its ±", ""]
    if differences:
        lines += [f"Note: {d}" for d in differences]
        lines += ["Note: so each Δ below measures that difference as well as the cell's", ""]
    both = c[c["in"] == "both"]
    header = ["weights", "K/V", "ctx"] + [f"Δ {n}" for n, *_ in COMPARED]
    rows = []
    for r in records(both):
        row = [r.weights, f"{r.type_k}/{r.type_v}", str(r.ctx)]
        for n, _, _, digits in COMPARED:
            d, e = r[f"Δ {n}"], r[f"Δ {n} ±"]
            row.append(f"{d:+.{digits}f} ± {e:.{digits}f}{' *' if n in r.differs.split(', ') else ''}")
        rows.append(row)
    if rows:
        lines += text_table(rows, header)
    speeds = [(n, col) for n, col in SPEEDS if both.get(f"{n} A") is not None and both[f"{n} A"].notna().any()
              and both[f"{n} B"].notna().any()]
    if speeds:
        lines += ["", "Speed side by side (A | B, and B/A):"]
        srows = [[r.weights, f"{r.type_k}/{r.type_v}", str(r.ctx)]
                 + [f"{_num(r[f'{n} A'])} | {_num(r[f'{n} B'])}  ({_ratio(r[f'{n} B/A'])})" for n, _ in speeds]
                 for r in records(both)]
        lines += text_table(srows, ["weights", "K/V", "ctx", *[n for n, _ in speeds]])
    flagged = both[both.differs != ""]
    lines += ["", f"{len(flagged)} of {len(both)} cells differ by more than their ± "
              f"({', '.join(sorted({f for d in flagged.differs for f in d.split(', ')})) or 'none'})."]
    only = c[c["in"] != "both"]
    if not only.empty:
        lines += ["", "Measured in one run only:"]
        lines += [f"  - {r.weights} {r.type_k}/{r.type_v} ctx {r.ctx}: {r['in']}" for r in records(only)]
    if tasks is not None and not tasks.empty:
        lines += ["", "Tasks, B's answers against A's, task by task (exact McNemar p; changed at p < 0.05):"]
        trows = [[r.task, r.weights, f"{r.type_k}/{r.type_v}", f"{100 * r.accuracy_a:.2f} %",
                  f"{100 * r.accuracy_b:.2f} %", f"{100 * r.accuracy_delta:+.2f} pp",
                  *(("—", "—", "—", "not the same tasks") if r.p is None or pd.isna(r.p) else
                    (str(int(r.right_to_wrong)), str(int(r.wrong_to_right)), f"{r.p:.3g}",
                     "changed" if r.changed else "no change detected"))]
                 for r in tasks.itertuples()]
        lines += text_table(trows, ["task", "weights", "K/V", "A", "B", "B − A", "right→wrong", "wrong→right",
                                    "p", "verdict"])
    return lines


def _num(v) -> str:
    return "—" if v is None or v != v else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _ratio(v) -> str:
    return "—" if v is None or v != v else f"×{v:.2f}"


def plain(v):
    """A value as JSON has it: numpy numbers as Python's, NaN and None as null."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
        return None if isinstance(v, float) and v != v else v
    return v


def rows_json(df: pd.DataFrame, columns: list[str]) -> list[dict]:
    cols = [c for c in columns if c in df]
    return [{c: plain(v) for c, v in zip(cols, row)} for row in df[cols].itertuples(index=False, name=None)]


RECOMMEND_COLUMNS = ["rank", "weights", "type_k", "type_v", "strategy", "kld_mean", "kld_mean_err", "same_top",
                     "same_top_err", "mem_weights", "mem_kv", "mem_total", "ctx_reached", "tg_test", "tg_ts",
                     "tg_ts_std", "tg_unsteady", "task_accuracy", "task_changed"]


def recommend_json(name: str, rec: Recommendation, budget, ctx: int | None, max_kld: float | None,
                   reserve_why: str = "--reserve") -> dict:
    """What `recommend --json` prints: the question, the verdict, the cells (bytes, not MiB) and the notes."""
    def cell(r):
        return None if r is None else rows_json(r.to_frame().T, RECOMMEND_COLUMNS)[0]

    return {"recipe": name, "vram_bytes": budget.vram, "reserve_bytes": budget.reserve, "reserve_why": reserve_why,
            "ctx": ctx, "max_kld": max_kld, "verdict": rec.verdict, "best": cell(rec.best),
            "runner_up": cell(rec.runner_up), "cells": rows_json(rec.table, RECOMMEND_COLUMNS),
            "suggestions": list(rec.suggestions), "notes": list(rec.notes)}


def compare_json(a_name: str, b_name: str, c: pd.DataFrame, differences: list[str] = (),
                 tasks: pd.DataFrame | None = None) -> dict:
    """What `compare --json` prints: each cell's B − A with its ± per measure, and where it differs."""
    cols = ["weights", "type_k", "type_v", "ctx", "in", "differs"]
    names = {}  # plain keys for scripts: kld_mean_delta, kld_mean_delta_err, …
    for n, col, *_ in COMPARED:
        cols += [f"Δ {n}", f"Δ {n} ±"]
        names |= {f"Δ {n}": f"{col}_delta", f"Δ {n} ±": f"{col}_delta_err"}
    for n, col in SPEEDS:
        cols += [f"{n} A", f"{n} B", f"{n} B/A"]
        names |= {f"{n} A": f"{col}_a", f"{n} B": f"{col}_b", f"{n} B/A": f"{col}_ratio"}
    cells = [{names.get(k, k): v for k, v in row.items()} for row in rows_json(c, cols)] if not c.empty else []
    task_rows = rows_json(tasks, list(tasks.columns)) if tasks is not None and not tasks.empty else []
    return {"a": a_name, "b": b_name, "run_differences": list(differences), "z": Z, "cells": cells,
            "tasks": task_rows}
