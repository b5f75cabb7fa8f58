"""Answers from store rows: the frame of measured cells, ties, the Pareto frontier, per-GiB metrics,
what fits a memory budget, and run-against-run comparisons. Pure pandas and no tool runs; the one file
read is the metadata memo, for stores written before results carried the model's architecture.

Statistical honesty: a difference counts only when it exceeds its combined uncertainty,
Z × √(σ₁² + σ₂²), with σ the standard errors llama-perplexity prints and Z = 2 (about 95 %).
Two cells whose KLD differ by less share a rank.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from orchestrator.inputs import gguf_info
from orchestrator.plan import memory

Z = 2.0
FULL_PRECISION = {"f32", "f16", "bf16"}
# a bench whose standard deviation over its repetitions exceeds this share of its mean is not trusted:
# quiet-machine runs of llama-bench stay within a few per cent
BENCH_CV_MAX = 0.10


def unsteady(mean, std) -> bool:
    """A speed too spread to trust: coefficient of variation above BENCH_CV_MAX."""
    m, s = _f(mean), _f(std)
    return m > 0 and s / m > BENCH_CV_MAX


def combined(e1, e2) -> float:
    """The ± of a difference of two independent measurements (Z standard errors)."""
    return Z * math.hypot(_f(e1), _f(e2))


class Row(dict):
    """A record read by attribute (r.kld_mean) as a pandas row is, without building a Series per row:
    iterating 10,000 cells this way takes milliseconds, not seconds."""
    __getattr__ = dict.__getitem__


def records(df: pd.DataFrame, columns=None):
    """The rows as Row records; `columns` narrows them to what a loop reads (to_dict is per value)."""
    return map(Row, (df if columns is None else df[[c for c in columns if c in df]]).to_dict("records"))


def _f(v) -> float:
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# ---------------------------------------------------------------------------------------------
# the measured cells


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per measured KLD cell (status ok): quality with its ±, size, speed at depth 0."""
    k = df[(df.measurement == "kld") & (df.status == "ok") & df.kld_mean.notna()].copy()  # a cell without its
    # number (a store of an earlier version kept `nan` as NULL) is never shown or ranked as a measurement
    if k.empty:
        return k
    b = df.loc[(df.measurement == "bench") & (df.status == "ok"),  # only what is read: a bench row has ~100
               ["weights", "type_k", "type_v", "n_gen", "n_prompt", "n_depth", "test", "ts_mean", "ts_std"]]
    for prefix, col in (("tg", "n_gen"), ("pp", "n_prompt")):
        t = b[(b[col] > 0) & (b.n_depth.fillna(0) == 0) & b.test.str.startswith(prefix)]
        t = t.groupby(["weights", "type_k", "type_v"]).agg(**{f"{prefix}_ts": ("ts_mean", "first"),
                                                              f"{prefix}_ts_std": ("ts_std", "first"),
                                                              f"{prefix}_test": ("test", "first")})
        k = k.merge(t, on=["weights", "type_k", "type_v"], how="left")
        k[f"{prefix}_unsteady"] = [unsteady(m, s) if not pd.isna(m) else None
                                   for m, s in zip(k[f"{prefix}_ts"], k[f"{prefix}_ts_std"])]
    k["file_bytes"] = pd.to_numeric(k.file_bytes, errors="coerce")
    k["size_gib"] = k.file_bytes / 2**30
    k["strategy"] = ["f16 cache" if (tk in FULL_PRECISION and tv in FULL_PRECISION) else "quantized cache"
                     for tk, tv in zip(k.type_k, k.type_v)]
    return k.reset_index(drop=True)


def with_per_gib(k: pd.DataFrame) -> pd.DataFrame:
    """The Scout comparison's "metric per GiB": 1/PPL, 1/KLD and same-top, each per GiB of weights."""
    k = k.copy()
    k["inv_ppl_per_gib"] = 1 / k.ppl_q / k.size_gib
    k["inv_kld_per_gib"] = 1 / k.kld_mean / k.size_gib
    k["same_top_per_gib"] = k.same_top / k.size_gib
    return k


def tie_ranks(values, errors) -> list[str]:
    """Competition ranks by value (lower is better); a value within Z·σ of its group's leader ties
    with it: '1', '=2', '=2', '4'."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks: list[str] = [""] * len(values)
    leader = None
    group_rank = 0
    tied: dict = {}
    for pos, i in enumerate(order):
        if leader is None or values[i] - values[leader] > combined(errors[i], errors[leader]):
            leader, group_rank = i, pos + 1
        tied.setdefault(group_rank, []).append(i)
        ranks[i] = str(group_rank)
    for r, members in tied.items():
        if len(members) > 1:
            for i in members:
                ranks[i] = f"={r}"
    return ranks


def pareto(sizes, klds) -> list[bool]:
    """On the frontier: no other cell is at most as large and strictly better (lower KLD)."""
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], klds[i]))
    on = [False] * len(sizes)
    best = math.inf
    for i in order:
        if klds[i] < best:
            on[i], best = True, klds[i]
    return on


# ---------------------------------------------------------------------------------------------
# the model's architecture, from the store (or the metadata memo of the same file)


def architecture(df: pd.DataFrame) -> memory.Architecture:
    rows = df.dropna(subset=["model_arch_json"]) if "model_arch_json" in df else df.iloc[0:0]
    if not rows.empty:
        d = json.loads(rows.model_arch_json.iloc[0])
        arch, hp = d["architecture"], d["hparams"]
    else:  # stores written before the architecture was recorded: the memo of the same file
        from orchestrator.tools.toolchain import cache_root

        sha = df.source_sha256.dropna().iloc[0] if "source_sha256" in df and df.source_sha256.notna().any() else ""
        info = gguf_info.memoized(cache_root() / "gguf-info", sha, older=True)
        if info is None:
            raise memory.MemoryModelError(
                "the store does not record the model's architecture: run `quantsweep run` on the recipe "
                "once more (every job is cached, nothing is recomputed)")
        arch, hp = info.architecture, info.hparams
    n_vocab = int(df.n_vocab.dropna().iloc[0]) if df.n_vocab.notna().any() else int(hp.get("vocab_size", 0))
    return memory.Architecture.from_hparams(arch, hp, n_vocab)


# ---------------------------------------------------------------------------------------------
# recommend


@dataclass
class Budget:
    vram: int
    reserve: int
    n_ubatch: int = memory.UBATCH

    @property
    def usable(self) -> int:
        return self.vram - self.reserve


def weights_bytes(row) -> int:
    return int(row.tensor_bytes if not pd.isna(row.get("tensor_bytes")) and row.tensor_bytes
               else row.file_bytes)


def fit_table(k: pd.DataFrame, arch: memory.Architecture, budget: Budget, ctx: int | None) -> pd.DataFrame:
    """Every measured cell with its footprint at `ctx` (or the longest context it reaches when None)."""
    k = k.copy()
    totals, kvs, reach, ws = [], [], [], []
    for r in records(k, ["tensor_bytes", "file_bytes", "type_k", "type_v"]):
        w = weights_bytes(r)
        c = ctx if ctx is not None else memory.max_ctx(arch, w, r.type_k, r.type_v, budget.usable, budget.n_ubatch)
        fp = memory.footprint(arch, w, r.type_k, r.type_v, max(c, memory.PAD), budget.n_ubatch)
        totals.append(fp.total)
        kvs.append(fp.kv)
        reach.append(c)
        ws.append(w)
    k["mem_total"], k["mem_kv"], k["ctx_reached"], k["mem_weights"] = totals, kvs, reach, ws
    k["fits"] = (k.mem_total <= budget.usable) & (k.ctx_reached > 0)
    return k


@dataclass
class Recommendation:
    table: pd.DataFrame           # the rows to show, best first
    best: pd.Series | None
    runner_up: pd.Series | None   # the best cell of the other strategy
    verdict: str
    suggestions: list[str]
    notes: list[str]


def _label(r) -> str:
    return f"{r.weights} + {r.type_k}/{r.type_v}"


def _kld(r) -> str:
    return f"KLD {r.kld_mean:.6f} ± {r.kld_mean_err:.6f}"


def recommend(k: pd.DataFrame, arch: memory.Architecture, budget: Budget, ctx: int | None,
              max_kld: float | None = None, cache_types=("f16", "q8_0", "q5_1", "q4_0")) -> Recommendation:
    notes = []
    ctx_measured = sorted({int(c) for c in k.ctx.dropna()})
    notes.append(f"KLD was measured at ctx {', '.join(map(str, ctx_measured))} on {k.corpus.iloc[0]}; "
                 "memory is computed for the context asked")
    if len(ctx_measured) > 1:  # one row per cell: the KLD measured nearest the context asked
        target = ctx or max(ctx_measured)
        k = k.assign(_d=(k.ctx - target).abs()).sort_values(["_d", "ctx"], ascending=[True, False])
        k = k.drop_duplicates(["weights", "type_k", "type_v"]).drop(columns="_d")
        notes.append(f"each cell's KLD is the one measured at the context nearest {target}")
    if ctx is not None and arch.n_ctx_train and ctx > arch.n_ctx_train:
        notes.append(f"{ctx} tokens is beyond the model's trained context ({arch.n_ctx_train})")
    t = fit_table(k, arch, budget, ctx)
    fit = t[t.fits]
    if max_kld is not None:
        fit = fit[fit.kld_mean <= max_kld]
    suggestions = _suggest(t, arch, budget, ctx, cache_types)
    if fit.empty:
        smallest = t.sort_values("mem_total").iloc[0]
        why = f" with KLD ≤ {max_kld}" if max_kld is not None else ""
        at = f" at {ctx} tokens" if ctx is not None else ""
        verdict = (f"No measured configuration{why} fits {memory.gib(budget.vram)}{at}; the smallest, "
                   f"{_label(smallest)}, needs {memory.gib(smallest.mem_total + budget.reserve)}.")
        return Recommendation(t.sort_values("mem_total").head(5), None, None, verdict, suggestions, notes)
    if max_kld is not None:  # the smallest configuration under the quality bound
        if ctx is not None:
            fit = fit.sort_values(["mem_total", "kld_mean"])
            best = fit.iloc[0]
            size = f"{memory.gib(best.mem_total)} at ctx {ctx}"
        else:  # every cell fills the budget at its longest context: smallest weights, then longest context
            fit = fit.sort_values(["mem_weights", "ctx_reached", "kld_mean"], ascending=[True, False, True])
            best = fit.iloc[0]
            size = f"{memory.gib(best.mem_weights)} of weights, reaching {best.ctx_reached} tokens"
        verdict = f"Smallest configuration with KLD ≤ {max_kld}: {_label(best)} ({size}, {_kld(best)})."
        return Recommendation(fit.assign(rank=range(1, len(fit) + 1)), best, None, verdict, suggestions, notes)
    if ctx is None:  # the longest context each configuration reaches
        capped = int((fit.ctx_reached >= arch.n_ctx_train).sum()) if arch.n_ctx_train else 0
        if capped:
            notes.append(f"{capped} of {len(fit)} configurations reach the model's trained context "
                         f"({arch.n_ctx_train} tokens), where the search stops: for them the model, not the "
                         f"memory, is the limit (ask --ctx N for a longer one)")
        fit = fit.assign(rank=tie_ranks(list(fit.kld_mean), list(fit.kld_mean_err)))
        fit = fit.sort_values(["ctx_reached", "kld_mean"], ascending=[False, True])
        longest = fit.iloc[0]
        best = fit.sort_values("kld_mean").iloc[0]
        verdict = (f"Longest context on {memory.gib(budget.vram)}: {_label(longest)} reaches "
                   f"{longest.ctx_reached} tokens ({_kld(longest)}); the most faithful, {_label(best)}, "
                   f"reaches {best.ctx_reached}.")
        return Recommendation(fit, best, None, verdict, suggestions, notes)
    fit = fit.sort_values("kld_mean")
    fit = fit.assign(rank=tie_ranks(list(fit.kld_mean), list(fit.kld_mean_err)))
    best = fit.iloc[0]
    other = fit[fit.strategy != best.strategy]
    runner = other.iloc[0] if not other.empty else None
    verdict = _verdict(best, runner, t, budget, ctx)
    return Recommendation(fit, best, runner, verdict, suggestions, notes)


def _verdict(best, runner, t: pd.DataFrame, budget: Budget, ctx: int) -> str:
    """What the winner is and what it gave up, in words that stay true in every case: nothing given up
    (the largest measured weights with an f16 cache fit), the cache quantized, the weights shrunk, or
    one strategy the only one that fits."""
    head = f"At {ctx} tokens on {memory.gib(budget.vram)}: {_label(best)} ({_kld(best)})"
    tied = runner is not None and runner.kld_mean - best.kld_mean <= combined(best.kld_mean_err,
                                                                              runner.kld_mean_err)
    if best.strategy == "f16 cache" and best.mem_weights >= t.mem_weights.max():
        text = head + (" fits with the largest measured weights and an f16 cache: neither shrink the weights nor "
                       "quantize the cache.")
        if runner is not None:
            text += (f" The best quantized-cache option, {_label(runner)} ({_kld(runner)}), "
                     + ("ties with it within ±." if tied else "is worse beyond ±."))
        return text
    if runner is None:
        other = "f16 cache" if best.strategy == "quantized cache" else "quantized cache"
        cand = t[t.strategy == other]
        if cand.empty:
            return head + f" is the best fit; the recipe measures no {other} cell to compare strategies with."
        smallest = cand.sort_values("mem_total").iloc[0]
        return (head + f" is the best fit. No {other} configuration fits: the smallest measured, "
                f"{_label(smallest)}, needs {memory.gib(smallest.mem_total + budget.reserve)}"
                + (", so at this context the cache has to be quantized." if other == "f16 cache" else "."))
    if tied:
        return head + f" and {_label(runner)} ({_kld(runner)}) are tied within ±: either strategy."
    if best.strategy == "quantized cache":
        choice = ("quantize the cache rather than shrink the weights" if best.mem_weights > runner.mem_weights
                  else "the quantized cache measured better here although it buys no larger weights")
    else:
        choice = ("shrink the weights rather than quantize the cache" if best.mem_weights < runner.mem_weights
                  else "keep the f16 cache: the quantized one buys no larger weights here")
    return head + f" beats the best {runner.strategy} option, {_label(runner)} ({_kld(runner)}): {choice}."


def _suggest(t: pd.DataFrame, arch, budget: Budget, ctx: int | None, cache_types) -> list[str]:
    """Cells not measured that would answer better: measured weights with a cache pair the recipe lacks
    that would fit where its measured pairs do not, or the strategy the recipe leaves out. Named, never
    invented: their KLD is unknown until they are run."""
    if ctx is None:
        return []
    measured = {(r.weights, r.type_k, r.type_v) for r in t.itertuples()}
    out = []
    fitting = set(t[t.fits].weights)
    for r in records(t.drop_duplicates("weights").sort_values("file_bytes", ascending=False)):
        if r.weights in fitting:
            continue
        for ct in cache_types:  # the least quantized cache that would let these weights fit
            if (r.weights, ct, ct) in measured:
                continue
            fp = memory.footprint(arch, weights_bytes(r), ct, ct, ctx, budget.n_ubatch)
            if fp.total <= budget.usable:
                out.append(f"{r.weights} + {ct}/{ct} would fit ({memory.gib(fp.total + budget.reserve)}): "
                           f"add the pair [{ct}, {ct}] to the recipe's cache.pairs")
                break
    strategies = set(t.strategy)
    if strategies == {"quantized cache"}:
        out.append("the recipe measures no f16 cache: add the pair [f16, f16] to compare the two strategies")
    elif strategies == {"f16 cache"} and not out:
        out.append("the recipe measures no quantized cache: add [q8_0, q8_0] (and [q4_0, q4_0]) to compare "
                   "the two strategies")
    return out


# ---------------------------------------------------------------------------------------------
# compare


def run_differences(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """What differs between two runs besides their cells: the model, the reference, the corpus, the
    toolchain. A comparison across them measures that difference too, so it is said first."""
    def values(df, col):
        if col == "toolchain_name":  # rows from before a second toolchain existed: llama.cpp's
            return sorted({str(v) for v in df[col].fillna("llama.cpp").unique()}) if col in df else ["llama.cpp"]
        return sorted({str(v) for v in df[col].dropna().unique()}) if col in df else []

    out = []
    for what, col, short in (("model", "source_sha256", 12), ("reference", "reference", 0),
                             ("corpus", "corpus_sha256", 12), ("toolchain", "toolchain_name", 0),
                             ("llama.cpp build", "toolchain_commit", 0),
                             ("backend", "toolchain_backends", 0)):
        va, vb = values(a, col), values(b, col)
        if va and vb and va != vb:
            label = {"source_sha256": "model_name", "corpus_sha256": "corpus"}.get(col)
            def name(df, vs, label=label, short=short):
                shown = ", ".join(v[:short] + "…" if short else v for v in vs)
                return f"{', '.join(values(df, label))} ({shown})" if label else shown
            out.append(f"A and B differ in {what}: {name(a, va)} vs {name(b, vb)}")
    return out


COMPARED = [("KLD", "kld_mean", "kld_mean_err", 6), ("PPL ratio", "ppl_ratio", "ppl_ratio_err", 4),
            ("Same top p", "same_top", "same_top_err", 3)]
# side by side, as B/A (no ± to judge by: a speed is a property of the machine and the build as much as of
# the cell): llama-bench's prompt processing and generation, and the wall of the cell's KLD run
SPEEDS = [("pp t/s", "pp_ts"), ("tg t/s", "tg_ts"), ("KLD run s", "tool_wall_s")]


def compare(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Cell by cell: B − A for each quality measure with its combined ±, flagged only where the
    difference exceeds it. Cells measured in one run only are listed with where they are."""
    keys = ["weights", "type_k", "type_v", "ctx"]
    ka, kb = cells(a), cells(b)
    m = ka.merge(kb, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True, sort=False)
    m["_size"] = m.file_bytes_a.fillna(m.file_bytes_b)
    m["_k"] = [-memory.bytes_per_value(t) if t in memory.CACHE_BLOCKS else 0 for t in m.type_k]
    m["_v"] = [-memory.bytes_per_value(t) if t in memory.CACHE_BLOCKS else 0 for t in m.type_v]
    m = m.sort_values(["_size", "_k", "_v"], ascending=[False, True, True], kind="stable")
    rows = []
    wanted = ["weights", "type_k", "type_v", "ctx", "_merge"] + [f"{c}_{s}" for _, col, err, _ in COMPARED
                                                                for c in (col, err) for s in "ab"]
    wanted += [f"{col}_{s}" for _, col in SPEEDS for s in "ab" if f"{col}_{s}" in m]
    for r in records(m, wanted):
        row = {"weights": r.weights, "type_k": r.type_k, "type_v": r.type_v, "ctx": int(r.ctx),
               "in": {"both": "both", "left_only": "A only", "right_only": "B only"}[r._merge]}
        flags = []
        for name, col, err, _ in COMPARED:
            va, vb = r.get(f"{col}_a"), r.get(f"{col}_b")
            row[f"{name} A"], row[f"{name} B"] = va, vb
            if r._merge == "both":
                d, pmv = vb - va, combined(r[f"{err}_a"], r[f"{err}_b"])
                row[f"Δ {name}"], row[f"Δ {name} ±"] = d, pmv
                if abs(d) > pmv:
                    flags.append(name)
        row["differs"] = ", ".join(flags)
        for name, col in SPEEDS:
            va, vb = r.get(f"{col}_a"), r.get(f"{col}_b")
            row[f"{name} A"], row[f"{name} B"] = va, vb
            row[f"{name} B/A"] = vb / va if va and vb and va == va and vb == vb else None
        rows.append(row)
    return pd.DataFrame(rows)


def task_results(df: pd.DataFrame) -> pd.DataFrame:
    """One row per task and cell (the reference's first), its accuracy with the 95 % Wilson interval and,
    beside the reference's, the answers it changed: right→wrong, wrong→right, the exact McNemar p and
    whether that says it changed. With the cell's KLD (its first context) where measured."""
    from orchestrator.report.paired import paired, wilson

    if "task_outcomes" not in df:
        return pd.DataFrame()
    t = df[(df.measurement == "task") & (df.status == "ok") & df.task_outcomes.notna()]
    if t.empty:
        return pd.DataFrame()
    kld = df[(df.measurement == "kld") & (df.status == "ok")].sort_values("ctx")
    kld = kld.drop_duplicates(["weights", "type_k", "type_v"]).set_index(["weights", "type_k", "type_v"])
    rows = []
    for task, g in t.groupby("test", sort=False):
        ref = g[g.weights == "reference"]
        ref_outcomes = ref.task_outcomes.iloc[0] if not ref.empty else None
        for r in pd.concat([ref, g[g.weights != "reference"]]).itertuples():
            lo, hi = wilson(int(r.n_right), int(r.n_tasks))
            row = {"task": task, "task_format": r.task_format, "weights": r.weights, "type_k": r.type_k,
                   "type_v": r.type_v, "n_tasks": int(r.n_tasks), "n_right": int(r.n_right), "accuracy": r.accuracy,
                   "accuracy_lo": lo, "accuracy_hi": hi, "right_to_wrong": None, "wrong_to_right": None, "p": None,
                   "changed": None, "accuracy_delta": None,
                   "kld_mean": kld.kld_mean.get((r.weights, r.type_k, r.type_v))}
            if r.weights != "reference" and ref_outcomes is not None and len(ref_outcomes) == len(r.task_outcomes):
                pr = paired(ref_outcomes, r.task_outcomes)
                row.update(right_to_wrong=pr.right_to_wrong, wrong_to_right=pr.wrong_to_right, p=pr.p,
                           changed=pr.changed, accuracy_delta=r.accuracy - ref.accuracy.iloc[0])
            rows.append(row)
    return pd.DataFrame(rows)


def compare_tasks(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Task rows of two runs, cell by cell (the reference's too): each accuracy, B − A, and B's answers
    paired with A's task by task (the same task file and count: the same tasks in the same order)."""
    from orchestrator.report.paired import paired

    ta, tb = task_results(a), task_results(b)
    if ta.empty or tb.empty:
        return pd.DataFrame()
    keys = ["task", "weights", "type_k", "type_v"]
    oa = a[(a.measurement == "task") & (a.status == "ok")].rename(columns={"test": "task"})
    ob = b[(b.measurement == "task") & (b.status == "ok")].rename(columns={"test": "task"})
    m = ta.merge(tb, on=keys, suffixes=("_a", "_b")).merge(oa[keys + ["task_outcomes"]], on=keys).merge(
        ob[keys + ["task_outcomes"]], on=keys, suffixes=("_a", "_b"))
    rows = []
    for r in m.itertuples():
        row = {"task": r.task, "weights": r.weights, "type_k": r.type_k, "type_v": r.type_v,
               "accuracy_a": r.accuracy_a, "accuracy_b": r.accuracy_b, "accuracy_delta": r.accuracy_b - r.accuracy_a,
               "right_to_wrong": None, "wrong_to_right": None, "p": None, "changed": None}
        if len(r.task_outcomes_a) == len(r.task_outcomes_b):
            pr = paired(r.task_outcomes_a, r.task_outcomes_b)
            row.update(right_to_wrong=pr.right_to_wrong, wrong_to_right=pr.wrong_to_right, p=pr.p,
                       changed=pr.changed)
        rows.append(row)
    return pd.DataFrame(rows)


def generations(df: pd.DataFrame) -> pd.DataFrame:
    """One row per prompt and cell (the reference's first): its continuation and the first token at which it
    parts from the reference's (0: at once; the token limit: identical over it)."""
    from orchestrator.tools.generate import parting

    if "generated_ids" not in df:
        return pd.DataFrame()
    g = df[(df.measurement == "generate") & (df.status == "ok") & df.generated_ids.notna()]
    rows = []
    for prompt, h in g.groupby("test", sort=False):
        ref = h[h.weights == "reference"]
        for r in pd.concat([ref, h[h.weights != "reference"]]).itertuples():
            limit = int(r.n_generated) if not pd.isna(r.n_generated) else 0
            part = None if ref.empty or r.weights == "reference" else \
                parting(ref.generated_ids.iloc[0], r.generated_ids, max(limit, int(ref.n_generated.iloc[0])))
            rows.append({"prompt": prompt, "weights": r.weights, "type_k": r.type_k, "type_v": r.type_v,
                         "parts_at": part, "n_generated": limit, "text": r.generated_text})
    return pd.DataFrame(rows)
