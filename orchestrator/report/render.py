"""Write a report folder from store rows alone:

- README.md: tables, plots and how it was made;
- model-card.md: the same, compact, ready to paste into a Hugging Face model card;
- report.html: one self-contained page (tables and plots inline);
- kv_table, stats (as displayed) and cells (the numbers, one row per cell), each as CSV and parquet;
- the plots as PNG and SVG.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.report import analysis
from orchestrator.plan import memory
from orchestrator.files import atomic_path, write_text_atomic
from orchestrator.report import plots, tables

PLOTS = [("kld_vs_size", "Quality vs size (Pareto frontier labelled)"),
         ("kld_vs_speed", "Quality vs generation speed"),
         ("kld_vs_kv_memory", "Quality vs K/V-cache memory"),
         ("profiles", "Per-token KLD and Δp percentiles"),
         ("accuracy_vs_kld", "Task accuracy change vs KLD")]
TASKS_EXPLAIN = ("Each task set ran on the reference model and on every cell with `llama-perplexity` (--hellaswag, "
                 "--winogrande or --multiple-choice), the tasks drawn in the same order for every model, so each "
                 "cell's answers are paired with the reference's task by task. Accuracy is the share right with "
                 "its 95 % Wilson interval; Right→wrong and Wrong→right count the answers the cell changed; the "
                 "exact McNemar test on those says whether it changed them (p < 0.05: changed) or no change was "
                 "detected — two overlapping intervals alone say neither.")
EXPLAIN = ("KLD is the mean KL divergence of each variant's token distributions from the reference's (nats, ± its "
           "standard error), from `llama-perplexity --kl-divergence`; the reference logits were computed once "
           f"with an f16/f16 cache. Rank orders cells by KLD; cells within {analysis.Z:g}·√(σ₁²+σ₂²) of their "
           "group's best share its rank (=N). K/V MiB is the cache at the measured context from quantsweep's "
           "memory model. File MiB is the GGUF file on disk (tensor data, metadata and vocabulary); BPW counts the "
           "tensor data only; Tensor mix is the share of tensor bytes per type, with the tensors llama-quantize gave "
           "another type than asked because their rows do not divide into its blocks (fallbacks). Speed is "
           "`llama-bench` tokens/s, mean ± std over the repetitions (recomputed from the "
           f"raw samples); (unsteady) marks a spread above {analysis.BENCH_CV_MAX:.0%} of the mean, a speed taken "
           "beside other work: `quantsweep run RECIPE --rerun bench` measures it again.")


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |",
             "|" + "|".join("---" if i == 0 or not _numeric(df[c]) else "---:"
                            for i, c in enumerate(cols)) + "|"]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in df.itertuples(index=False, name=None)]
    return "\n".join(lines)


def html_table(df: pd.DataFrame) -> str:
    """A plain <table> of display strings (pandas' to_html takes seconds on a 10,000-cell store)."""
    esc = lambda v: html.escape(str(v))  # noqa: E731
    head = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in df.columns) + "</tr>"
    rows = ["<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>"
            for row in df.itertuples(index=False, name=None)]
    return f'<table class="t"><thead>{head}</thead><tbody>' + "\n".join(rows) + "</tbody></table>"


def csv_text(df: pd.DataFrame) -> str:
    """The frame as CSV, as pandas writes it (missing values empty), at the speed of the csv module."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(df.columns)
    w.writerows(df.to_numpy(dtype=object, na_value=None).tolist())
    return buf.getvalue()


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """A table of display strings straight from Arrow arrays, without column statistics (min/max of
    formatted text help no reader, and cost most of the time on the stats table's 10,000 columns);
    numbers as pandas writes them."""
    if not all(dt == np.dtype(object) for dt in df.dtypes):
        df.to_parquet(path, index=False)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = len(df)  # one Arrow array of every cell, column after column, cut into columns (zero-copy)
    cells = pa.array(df.to_numpy(dtype=object).ravel(order="F"), type=pa.string())
    cols = [cells.slice(i * rows, rows) for i in range(df.shape[1])]
    pq.write_table(pa.Table.from_arrays(cols, names=[str(c) for c in df.columns]), path,
                   write_statistics=False, use_dictionary=False)


def _numeric(col: pd.Series) -> bool:
    return all(str(v)[:1].isdigit() or str(v)[:1] in "-—=+" for v in col)


def numeric_cells(k: pd.DataFrame, arch: memory.Architecture | None) -> pd.DataFrame:
    """One row per measured cell (`analysis.cells`) with the numbers behind the tables (for CSV/parquet
    and notebooks)."""
    if k.empty:
        return k
    k = analysis.with_per_gib(k)
    k["rank"] = analysis.tie_ranks(list(k.kld_mean), list(k.kld_mean_err))
    k["pareto"] = analysis.pareto(list(k.file_bytes), list(k.kld_mean))
    if arch is not None:
        k["kv_bytes"] = [sum(arch.kv_bytes(tk, tv, int(c))) for tk, tv, c in zip(k.type_k, k.type_v, k.ctx)]
    keep = ["rank", "weights", "weights_type", "type_k", "type_v", "ctx", "n_chunks", "n_tokens", "tokens_evaluated",
            "kld_mean", "kld_mean_err",
            "kld_median", "kld_p99", "kld_p99_9", "kld_max", "ppl_q", "ppl_q_err", "ppl_ratio", "ppl_ratio_err",
            "same_top", "same_top_err", "dp_mean", "dp_mean_err", "rms_dp", "rms_dp_err", "file_bytes",
            "tensor_bytes", "bpw", "tensor_mix_json", "fallback_tensors", "kv_bytes", "pp_test", "pp_ts",
            "pp_ts_std", "pp_unsteady", "tg_test", "tg_ts", "tg_ts_std", "tg_unsteady",
            "inv_ppl_per_gib", "inv_kld_per_gib", "same_top_per_gib", "pareto", "corpus", "toolchain_commit",
            "toolchain_backends", "job_key"]
    optional = {"n_tokens", "tokens_evaluated"}  # stores before 0.2 have none
    return k[[c for c in keep if c in k and (c not in optional or k[c].notna().any())]]


TABLES = ("kv_table", "stats", "failures", "cells", "tasks", "generations")
GENERATE_EXPLAIN = ("Each prompt was continued greedily (temperature 0, llama-completion) by the reference model and "
                    "by every cell, and each continuation read back as tokens (llama-tokenize): a cell parts from "
                    "the reference at the first token where the two differ (token 0: at once; identical: not "
                    "within the tokens generated).")


def owned_files(folder: Path) -> set[str]:
    """The files of `folder` that a report writes (others there are left alone)."""
    names = {"README.md", "model-card.md", "report.html"}
    names |= {f"{t}.{ext}" for t in TABLES for ext in ("csv", "parquet")}
    names |= {f"{stem}.{ext}" for stem, _ in PLOTS for ext in ("png", "svg")}
    return {n for n in names if (folder / n).exists()}


def write(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    try:
        arch = analysis.architecture(df)
    except memory.MemoryModelError:
        arch = None
    k = analysis.cells(df)
    kld, sp = df[df.measurement == "kld"], tables.speed(df)  # each taken once from the whole store
    part, note = plots.readable(k) if not k.empty else (k, "")
    # a large store's full statistics table is only a file (the documents show the part the figures name):
    # a worker writes it, as it draws the figures, in other processes where there are CPUs for them
    figures = plots.Drawing(k, arch, out, also=[(_stats_files, (out, kld, sp))] if note else [])
    kv = tables.kv_table(kld, arch.kv_bytes if arch else None, sp)
    stats = None if note else tables.stats_table(kld, sp)
    fails, prov = tables.failures(df), tables.provenance(df)
    caveat = tables.imatrix_caveat(kld)
    task_numbers = analysis.task_results(df)
    task_table = tables.task_table(task_numbers)
    said = analysis.generations(df)
    said_table = tables.generation_table(said)
    written = []
    for stem, t in (("kv_table", kv), ("stats", stats), ("failures", fails), ("cells", numeric_cells(k, arch)),
                    ("tasks", task_numbers), ("generations", said)):
        if t is not None:
            written += _table_files(out, stem, t)
    written += figures.wait()
    (out / "accuracy_vs_kld.png").unlink(missing_ok=True)
    (out / "accuracy_vs_kld.svg").unlink(missing_ok=True)
    if not task_numbers.empty:
        written += plots.accuracy_vs_kld(task_numbers, out, plots._plt())
    shown = [(stem, title) for stem, title in PLOTS if (out / f"{stem}.png").exists()]

    if note:  # the tables the documents show: the cells of the weights the plots name, saying so
        weights = set(part.weights)
        view, sp = kld[kld.weights.isin(weights)], sp[sp.weights.isin(weights)]
        kv, stats = tables.kv_table(view, arch.kv_bytes if arch else None, sp), tables.stats_table(view, sp)
        note = (f"{note[0].upper()}{note[1:]}, in the tables and plots below; every cell is in kv_table.csv, "
                "stats.csv and cells.csv.")
    notes = [n for n in (note, caveat) if n]
    readme = out / "README.md"
    write_text_atomic(readme, _readme(name, prov, kv, stats, fails, shown, notes, task_table, said_table))
    card = out / "model-card.md"
    write_text_atomic(card, _model_card(name, prov, kv, shown, notes, task_table, said_table))
    page = out / "report.html"
    write_text_atomic(page, _html(name, prov, kv, stats, fails, shown, out, notes, task_table, said_table))
    return [readme, card, page, *written]


def _stats_files(out: Path, kld: pd.DataFrame, sp: pd.DataFrame) -> list[Path]:
    return _table_files(out, "stats", tables.stats_table(kld, sp))


def _table_files(out: Path, stem: str, t: pd.DataFrame) -> list[Path]:
    """`t` as `stem`.csv and .parquet ([] and neither file when the table is empty)."""
    csv, parquet = out / f"{stem}.csv", out / f"{stem}.parquet"
    if t.empty:
        csv.unlink(missing_ok=True)
        parquet.unlink(missing_ok=True)
        return []
    write_text_atomic(csv, csv_text(t))
    with atomic_path(parquet) as tmp:
        write_parquet(t, tmp)
    return [csv, parquet]


def _readme(name, prov, kv, stats, fails, shown, notes=(), tasks=None, said=None) -> str:
    parts = [f"# quantsweep report: {name}", "",
             "Regenerated from the quantsweep store with `quantsweep report`; every number below comes "
             "from a llama.cpp tool run recorded there. Also here: `model-card.md` (for a Hugging Face model "
             "card), `report.html` (one self-contained page), the tables as CSV and parquet (`cells.*`: the "
             "numbers, one row per cell).", "",
             "## How it was made", ""]
    parts += [f"- **{k}**: {v}" for k, v in prov.items()]
    parts += ["", EXPLAIN, ""]
    for note in notes:
        parts += [f"**{note}**", ""]
    if not kv.empty:
        parts += ["## Weights × K/V cache", "", markdown_table(kv), ""]
    if tasks is not None and not tasks.empty:
        parts += ["## Task accuracy, paired with the reference", "", TASKS_EXPLAIN, "", markdown_table(tasks), ""]
    if said is not None and not said.empty:
        parts += ["## What each cell says", "", GENERATE_EXPLAIN, "", markdown_table(said), ""]
    if shown:
        parts += ["## Plots", ""]
        parts += [f"### {title}\n\n![{title}]({stem}.png)\n" for stem, title in shown]
    if not stats.empty:
        parts += ["## Full statistics", "", markdown_table(stats), ""]
    if not fails.empty:
        parts += ["## Failed cells", "", markdown_table(fails), ""]
    return "\n".join(parts)


def _model_card(name, prov, kv, shown, notes=(), tasks=None, said=None) -> str:
    keep = [c for c in ("Rank", "Weights", "cache-type-k", "cache-type-v", "ctx", "KLD", "PPL ratio", "Same top p",
                        "File MiB", "BPW", "Tensor mix", "imatrix", "K/V MiB") if c in kv]
    parts = ["## Quantization quality", "",
             f"How far each quant and K/V-cache type moves the model's token distributions from the "
             f"reference, measured with llama.cpp's `llama-perplexity --kl-divergence` "
             f"(quantsweep recipe `{name}`). Lower KLD is closer; "
             "± is one standard error; cells within the error of each other share a rank.", ""]
    for note in notes:
        parts += [f"**{note}**", ""]
    if not kv.empty:
        parts += [markdown_table(kv[keep]), ""]
    if tasks is not None and not tasks.empty:
        parts += ["### Task accuracy", "", "Accuracy on each task set with its 95 % interval, and the answers each "
                  "cell changed against the reference's, task by task (exact McNemar p; changed at p < 0.05).", "",
                  markdown_table(tasks), ""]
    if said is not None and not said.empty:
        parts += ["### What it says", "", GENERATE_EXPLAIN, "", markdown_table(said), ""]
    for stem, title in shown[:2]:
        parts += [f"![{title}]({stem}.png)", ""]
    parts += ["<details><summary>How it was made</summary>", ""]
    parts += [f"- **{k}**: {v}" for k, v in prov.items()]
    parts += ["", "</details>", ""]
    return "\n".join(parts)


def _html(name, prov, kv, stats, fails, shown, out: Path, notes=(), tasks=None, said=None) -> str:
    def wide(df: pd.DataFrame) -> str:  # a table wider than the page scrolls inside its box, not the page
        return f'<div class="wide">{html_table(df)}</div>'

    def img(stem: str, title: str) -> str:
        data = base64.b64encode((out / f"{stem}.png").read_bytes()).decode()
        return f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}"/>' \
               f"<figcaption>{html.escape(title)}</figcaption></figure>"

    body = [f"<h1>quantsweep report: {html.escape(name)}</h1>", "<h2>How it was made</h2><ul>"]
    body += [f"<li><b>{html.escape(k)}</b>: {html.escape(str(v).strip('`'))}</li>" for k, v in prov.items()]
    body += ["</ul>", f"<p>{html.escape(EXPLAIN.replace('`', ''))}</p>"]
    body += [f"<p><b>{html.escape(note)}</b></p>" for note in notes]
    if not kv.empty:
        body += ["<h2>Weights × K/V cache</h2>", wide(kv)]
    if tasks is not None and not tasks.empty:
        body += ["<h2>Task accuracy, paired with the reference</h2>",
                 f"<p>{html.escape(TASKS_EXPLAIN.replace('`', ''))}</p>", wide(tasks)]
    if said is not None and not said.empty:
        body += ["<h2>What each cell says</h2>", f"<p>{html.escape(GENERATE_EXPLAIN)}</p>", wide(said)]
    if shown:
        body += ["<h2>Plots</h2>"] + [img(stem, title) for stem, title in shown]
    if not stats.empty:
        body += ["<h2>Full statistics</h2>", wide(stats)]
    if not fails.empty:
        body += ["<h2>Failed cells</h2>", wide(fails)]
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
             "table.t{border-collapse:collapse;font-size:12px}table.t td,table.t th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
             "table.t td:first-child,table.t th:first-child{text-align:left}.wide{overflow-x:auto}"
             "li{overflow-wrap:anywhere}figure{margin:1em 0}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>quantsweep report: {html.escape(name)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
