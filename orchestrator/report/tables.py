"""Publisher-style tables from store rows. Pure pandas: no I/O."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from orchestrator.report.analysis import records

KLD_ROWS = [("Maximum", "kld_max"), ("99.9%", "kld_p99_9"), ("99.0%", "kld_p99"), ("95.0%", "kld_p95"),
            ("90.0%", "kld_p90"), ("Median", "kld_median"), ("10.0%", "kld_p10"), ("5.0%", "kld_p5"),
            ("1.0%", "kld_p1"), ("0.1%", "kld_p0_1"), ("Minimum", "kld_min")]
DP_ROWS = [("Maximum", "dp_max"), ("99.9%", "dp_p99_9"), ("99.0%", "dp_p99"), ("95.0%", "dp_p95"),
           ("90.0%", "dp_p90"), ("75.0%", "dp_p75"), ("Median", "dp_median"), ("25.0%", "dp_p25"),
           ("10.0%", "dp_p10"), ("5.0%", "dp_p5"), ("1.0%", "dp_p1"), ("0.1%", "dp_p0_1"), ("Minimum", "dp_min")]


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def pm(v, e, digits: int, suffix: str = "") -> str:
    """A value with its ± as the tools print it; '—' where nothing was measured."""
    return _pms([v], [e], digits, suffix)[0]


def num(v, digits: int, suffix: str = "") -> str:
    return _nums([v], digits, suffix)[0]


def mix(type_bytes, top: int = 3) -> dict[str, float]:
    """Shares of the tensor bytes per type, largest first: {'Q8_0': 0.77, 'Q2_K': 0.19, …}."""
    if isinstance(type_bytes, str):
        type_bytes = json.loads(type_bytes)
    if not isinstance(type_bytes, dict) or not type_bytes:
        return {}
    total = sum(type_bytes.values()) or 1
    ranked = sorted(type_bytes.items(), key=lambda kv: -kv[1])
    return {t: b / total for t, b in ranked[:top]}


def mix_text(type_bytes, fallbacks=None, top: int = 3) -> str:
    """'Q8_0 77 %, Q2_K 19 %, F32 4 % (90 fallbacks)': what an odd BPW is made of."""
    shares = mix(type_bytes, top)
    if not shares:
        return "—"
    text = ", ".join(f"{t} {100 * f:.0f} %" for t, f in shares.items() if f >= 0.005) or "—"
    n = 0 if is_missing(fallbacks) else int(fallbacks)
    return text + (f" ({n} fallback{'s' * (n != 1)})" if n else "")


def scaled(v, unit: int):
    return None if is_missing(v) or not v else v / unit


def _order(df: pd.DataFrame) -> pd.DataFrame:
    """Weights by size (largest first, as published), then K/V pairs in recipe order."""
    df = df.copy()
    df["_size"] = df.groupby("weights")["file_bytes"].transform("max").fillna(0)
    df["_pair"] = df.groupby(["type_k", "type_v"], sort=False).ngroup()
    return df.sort_values(["_size", "weights", "_pair", "ctx"], ascending=[False, True, True, True])


def speed(df: pd.DataFrame) -> pd.DataFrame:
    """Bench rows pivoted to one row per (weights, K, V): '<test> t/s' columns, mean ± std."""
    b = df.loc[(df.measurement == "bench") & (df.status == "ok"),
               ["weights", "type_k", "type_v", "test", "ts_mean", "ts_std"]]
    if b.empty:
        return pd.DataFrame(columns=["weights", "type_k", "type_v"])
    from orchestrator.report.analysis import BENCH_CV_MAX

    mean, std = b.ts_mean.to_numpy(float), np.nan_to_num(b.ts_std.to_numpy(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        shaky = (mean > 0) & (std / mean > BENCH_CV_MAX)  # analysis.unsteady, a column at a time
    vals = [v + " (unsteady)" if u else v for v, u in zip(_pms(b.ts_mean, b.ts_std, 2), shaky)]
    keys = ["weights", "type_k", "type_v"]
    b = b[keys].assign(cell=(b.test + " t/s").to_numpy(), val=vals).drop_duplicates([*keys, "cell"])
    return b.pivot(index=keys, columns="cell", values="val").rename_axis(columns=None).reset_index()


def variant_label(row, many_pairs: bool, many_ctx: bool) -> str:
    label = row["weights"]
    if many_pairs:
        label += f" {row['type_k']}/{row['type_v']}"
    if many_ctx:
        label += f" c{int(row['ctx'])}"
    return label


def kv_table(df: pd.DataFrame, kv_bytes=None, sp: pd.DataFrame | None = None) -> pd.DataFrame:
    """(a) weights × cache-type-k × cache-type-v: rank by KLD (ties within ± share it), KLD, PPL,
    same-top, size, K/V memory at the measured context when `kv_bytes(type_k, type_v, ctx)` is given,
    speed (`sp`: speed(df), when the caller has it). Failed cells stay in the matrix, marked, so a gap is
    never mistaken for a cell not asked for."""
    from orchestrator.report.analysis import tie_ranks

    k = df[df.measurement == "kld"]
    if k.empty or (k.status != "ok").all():
        return pd.DataFrame()
    k = _order(k)
    ok = k.status == "ok"
    ranks = pd.Series("—", index=k.index)
    ranks[ok] = tie_ranks(list(k.kld_mean[ok]), list(k.kld_mean_err[ok]))
    out = pd.DataFrame({
        "Rank": ranks,
        "Weights": k.weights, "cache-type-k": k.type_k, "cache-type-v": k.type_v,
        **({"ctx": k.ctx.astype(int)} if k.ctx.nunique() > 1 else {}),
        "KLD": [v if st == "ok" else "failed" for v, st in zip(_pms(k.kld_mean, k.kld_mean_err, 6), k.status)],
        "PPL": _pms(k.ppl_q, k.ppl_q_err, 4),
        "PPL ratio": _pms(k.ppl_ratio, k.ppl_ratio_err, 4),
        "Same top p": _pms(k.same_top, k.same_top_err, 3, " %"),
        "File MiB": _nums([scaled(b, 2**20) for b in k.file_bytes], 1),
        "BPW": _nums(k.bpw, 2),
        "Tensor mix": [mix_text(m, f, top=2) for m, f in zip(_col(k, "tensor_mix_json"), _col(k, "fallback_tensors"))],
        **({"imatrix": _col(k, "imatrix")} if _any(k, "imatrix") else {}),
        **({"K/V MiB": _nums([sum(kv_bytes(tk, tv, int(c))) / 2**20 for tk, tv, c in zip(k.type_k, k.type_v, k.ctx)],
                             1)} if kv_bytes else {}),
        "weights": k.weights, "type_k": k.type_k, "type_v": k.type_v,
    })
    out = out.merge(speed(df) if sp is None else sp, on=["weights", "type_k", "type_v"], how="left")
    return out.drop(columns=["weights", "type_k", "type_v"]).fillna("—")


def _pms(values, errors, digits: int, suffix: str = "") -> list[str]:
    """pm over two columns at a time: a 10,000-cell table formats without a call per value (v != v: NaN)."""
    one = f"{{:.{digits}f}}{suffix}".format
    two = f"{{:.{digits}f}} ± {{:.{digits}f}}{suffix}".format
    return ["—" if v is None or v != v else one(v) if e is None or e != e else two(v, e)
            for v, e in zip(values, errors)]


def _nums(values, digits: int, suffix: str = "") -> list[str]:
    one = f"{{:.{digits}f}}{suffix}".format
    return ["—" if v is None or v != v else one(v) for v in values]


def stats_table(df: pd.DataFrame, sp: pd.DataFrame | None = None) -> pd.DataFrame:
    """(b) the full statistics, one column per variant (the shape of published quant comparisons).
    Built a statistic (a row) at a time over all variants: a 10,000-cell store formats in a fraction
    of a second."""
    k = df[(df.measurement == "kld") & (df.status == "ok")]
    if k.empty:
        return pd.DataFrame()
    k = _order(k)
    many_pairs = k[["type_k", "type_v"]].drop_duplicates().shape[0] > 1
    many_ctx = k.ctx.nunique() > 1
    gib = [scaled(b, 2**30) for b in k.file_bytes]
    rows = {
        "File size (GiB)": _nums(gib, 3),
        "BPW": _nums(k.bpw, 2),
        "Tensor mix (bytes)": [mix_text(m, f) for m, f in zip(_col(k, "tensor_mix_json"), _col(k, "fallback_tensors"))],
        **({"Importance matrix": ["—" if is_missing(v) else v for v in k.imatrix]} if _any(k, "imatrix") else {}),
        **({"Chunks (tokens scored)": [f"{int(c)} ({int(t):,})" if not is_missing(t) else "—"
                                       for c, t in zip(k.n_chunks, k.n_tokens)]}
           if "n_tokens" in k and k.n_chunks.nunique() > 1 else {}),  # chunks: auto — each cell its own
        "Mean PPL(Q)": _pms(k.ppl_q, k.ppl_q_err, 4),
        "Mean PPL(base)": _pms(k.ppl_base, k.ppl_base_err, 4),
        "PPL(Q)/PPL(base)": _pms(k.ppl_ratio, k.ppl_ratio_err, 4),
        "ln(PPL(Q)/PPL(base))": _pms(k.ln_ratio, k.ln_ratio_err, 5),
        "Cor(ln PPL(Q), ln PPL(base))": _nums(k.cor_ln_ppl, 2, " %"),
        "KLD mean": _pms(k.kld_mean, k.kld_mean_err, 6),
        **{f"KLD {name}": _nums(k[c], 6) for name, c in KLD_ROWS},
        "Δp mean": _pms(k.dp_mean, k.dp_mean_err, 3, " %"),
        **{f"Δp {name}": _nums(k[c], 3, " %") for name, c in DP_ROWS},
        "RMS Δp": _pms(k.rms_dp, k.rms_dp_err, 3, " %"),
        "Same top p": _pms(k.same_top, k.same_top_err, 3, " %"),
    }
    if any(gib):  # the Scout comparison's "metric per GiB" rows
        rows["1/PPL per GiB"] = [num(1 / q / g, 3) if g else "—" for q, g in zip(k.ppl_q, gib)]
        rows["1/KLD per GiB"] = [num(1 / d / g if d else None, 1) if g else "—" for d, g in zip(k.kld_mean, gib)]
        rows["Same top p per GiB"] = [num(s / g, 1, " %") if g else "—" for s, g in zip(k.same_top, gib)]
    keys = ["weights", "type_k", "type_v"]
    sp = k[keys].merge(speed(df) if sp is None else sp, on=keys, how="left", indicator=True)
    if (sp._merge == "both").any():
        for test in sp.columns.drop([*keys, "_merge"]):
            rows[test] = sp[test].fillna("—").tolist()
    labels = [variant_label(r, many_pairs, many_ctx) for r in records(k, ["weights", "type_k", "type_v", "ctx"])]
    last = {label: i for i, label in enumerate(labels)}  # a label measured twice shows its last row
    keep = [last[label] for label in dict.fromkeys(labels)]
    table = np.array([[name] + [values[i] for i in keep] for name, values in rows.items()], dtype=object)
    return pd.DataFrame(table, columns=["Statistic", *(labels[i] for i in keep)], dtype=object)


def failures(df: pd.DataFrame) -> pd.DataFrame:
    f = df[df.status == "failed"]
    if f.empty:
        return pd.DataFrame()
    return pd.DataFrame({"Weights": f.weights, "cache-type-k": f.type_k, "cache-type-v": f.type_v,
                         "measurement": [f"{m} {t}" if t else m for m, t in zip(f.measurement, f.test.fillna(""))],
                         "reason": f.reason.fillna(""),
                         "log": f.log_dir.fillna("")})


def _toolchain(first) -> str:
    name = getattr(first, "toolchain_name", None)
    return name if isinstance(name, str) and name else "llama.cpp"


def _pin(first) -> str:
    """A build from a vendored sdist is pinned by the sdist's version, a git build by its commit."""
    c = str(first.toolchain_commit)
    return f"sdist {c}" if "python-" in c else f"commit {c}"


def _any(df: pd.DataFrame, name: str) -> bool:
    return name in df and df[name].notna().any()


def imatrix_caveat(df: pd.DataFrame) -> str:
    """The warning every document carries when a cell's importance matrix was calibrated on the text its
    KLD is measured on (the plan warns of it too): such a number flatters the quant."""
    from orchestrator.recipe.advice import EVALUATED_TEXT

    k = df[(df.measurement == "kld")] if "measurement" in df else df
    if not _any(k, "imatrix"):
        return ""
    labels = sorted({w for w, im in zip(k.weights, k.imatrix) if isinstance(im, str) and EVALUATED_TEXT in im})
    if not labels:
        return ""
    return (f"Caveat: the importance matrix of {', '.join(labels)} was {EVALUATED_TEXT}, so its KLD and PPL "
            "flatter it; calibrate on other text to publish a fair number.")


def _col(df: pd.DataFrame, name: str) -> list:
    """A column that stores written by older versions may lack: None for each row."""
    return list(df[name]) if name in df else [None] * len(df)


def _reference(row) -> str:
    src = row.get("source_quant")
    tensors = mix_text(row.get("source_tensor_mix_json"))
    tensors = f", tensor bytes {tensors}" if tensors != "—" else ""
    if row.reference == "source":
        return f"the model as given (file type {src}{tensors})" if src else "the model as given"
    text = f"the model converted to {row.reference} by llama-quantize"
    if src and src not in ("F16", "BF16", "F32"):
        text += (f". The source itself is {src} (its file type{tensors}), so KLD here measures the distance from "
                 f"that model (expanded losslessly to {row.reference}), not from the original full-precision weights")
    return text


def _command(k: pd.DataFrame) -> str:
    """The argv of one KLD cell, paths shortened to file names: every flag that shaped the numbers."""
    ok = k[(k.status == "ok") & k.argv.notna()] if "argv" in k else k.iloc[0:0]
    if ok.empty:
        return "—"
    parts = [p.rsplit("/", 1)[-1] for p in str(ok.iloc[0].argv).split(" ")]
    return "`" + " ".join(parts) + "`"


def provenance(df: pd.DataFrame) -> dict:
    first = df.iloc[0]
    k = df[df.measurement == "kld"]
    chunks = sorted({int(c) for c in k.n_chunks.dropna()}) if "n_chunks" in k else []
    ctxs = sorted({int(c) for c in k.ctx.dropna()})
    return {
        "Model": f"{first.model_name} ({first.source})",
        "Model sha256": first.source_sha256,
        "Reference": _reference(first),
        "Corpus": f"{first.corpus} (sha256 {str(first.corpus_sha256)[:16]}…)",
        "Context / chunks": f"ctx {', '.join(map(str, ctxs)) or '—'}; " + (
            f"{chunks[0]}–{chunks[-1]} chunks a cell (chunks: auto, each cell until its KLD ± reached the "
            "precision asked; each cell's chunks and tokens in the statistics)"
            if _any(k, "tokens_evaluated") and len(chunks) > 1 else f"{', '.join(map(str, chunks)) or '—'} chunks"),
        **({"Importance matrices": "; ".join(f"{w}: {im}" for w, im in dict(zip(k.weights, k.imatrix)).items()
                                             if isinstance(im, str))} if _any(k, "imatrix") else {}),
        **{_toolchain(first): f"{_pin(first)}, backends {first.toolchain_backends}"},
        "Hardware": f"{first.host_cpu}" + (f"; {first.host_gpu}" if first.host_gpu else ""),
        "Recipe": f"{first.recipe} (sha256 {str(first.recipe_hash)[:16]}…)",
        "One cell's command": _command(k),
        "Measured": f"{df.created_at.min()} – {df.created_at.max()}",
    }


def task_table(t: pd.DataFrame) -> pd.DataFrame:
    """The accuracy table: per task and cell, the score with its 95 % interval, the change from the reference
    and the answers behind it (flips each way, exact McNemar p), and what that says."""
    if t.empty:
        return pd.DataFrame()
    rows = []
    for r in t.itertuples():
        ref = r.weights == "reference"
        verdict = "reference" if ref else "—" if r.p is None or pd.isna(r.p) else \
            "changed" if r.changed else "no change detected"
        rows.append({"Task": r.task, "Weights": r.weights, "cache-type-k": r.type_k, "cache-type-v": r.type_v,
                     "Tasks": int(r.n_tasks),
                     "Accuracy": f"{100 * r.accuracy:.2f} % [{100 * r.accuracy_lo:.1f}, {100 * r.accuracy_hi:.1f}]",
                     "Δ vs reference": "" if ref or is_missing(r.accuracy_delta)
                     else f"{100 * r.accuracy_delta:+.2f} pp",
                     "Right→wrong": "" if ref or is_missing(r.right_to_wrong) else str(int(r.right_to_wrong)),
                     "Wrong→right": "" if ref or is_missing(r.wrong_to_right) else str(int(r.wrong_to_right)),
                     "McNemar p": "" if ref or is_missing(r.p) else f"{r.p:.3g}", "Verdict": verdict})
    return pd.DataFrame(rows, dtype=object)


def generation_table(g: pd.DataFrame) -> pd.DataFrame:
    """What each cell says, prompt by prompt: where it parts from the reference and its continuation (new lines
    shown as ⏎)."""
    if g.empty:
        return pd.DataFrame()
    rows = []
    for r in g.itertuples():
        if r.weights == "reference":
            parts = "reference"
        elif r.parts_at is None or pd.isna(r.parts_at):
            parts = "—"
        else:
            parts = "identical" if int(r.parts_at) >= r.n_generated else f"token {int(r.parts_at)}"
        rows.append({"Prompt": r.prompt, "Weights": r.weights, "cache-type-k": r.type_k, "cache-type-v": r.type_v,
                     "Parts from the reference at": parts,
                     "Continuation": str(r.text).replace("\r", "").replace("\n", " ⏎ ").strip()})
    return pd.DataFrame(rows, dtype=object)
