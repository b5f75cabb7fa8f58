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

import pandas as pd

from .. import analysis, memory
from ..files import atomic_path, write_text_atomic
from . import plots, tables

PLOTS = [("kld_vs_size", "Quality vs size (Pareto frontier labelled)"),
         ("kld_vs_speed", "Quality vs generation speed"),
         ("kld_vs_kv_memory", "Quality vs K/V-cache memory"),
         ("profiles", "Per-token KLD and Δp percentiles")]
EXPLAIN = ("KLD is the mean KL divergence of each variant's token distributions from the reference's (nats, ± its "
           "standard error), from `llama-perplexity --kl-divergence`; the reference logits were computed once "
           f"with an f16/f16 cache. Rank orders cells by KLD; cells within {analysis.Z:g}·√(σ₁²+σ₂²) of their "
           "group's best share its rank (=N). K/V MiB is the cache at the measured context from quantsweep's "
           "memory model. File MiB is the GGUF file on disk (tensor data, metadata and vocabulary); BPW counts the "
           "tensor data only; Tensor mix is the share of tensor bytes per type, with the tensors llama-quantize gave "
           "another type than asked because their rows do not divide into its blocks (fallbacks). Speed is `llama-bench` tokens/s, mean ± std over the repetitions (recomputed from the "
           f"raw samples); (unsteady) marks a spread above {analysis.BENCH_CV_MAX:.0%} of the mean, a speed taken "
           "beside other work: `quantsweep run RECIPE --rerun bench` measures it again.")


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |",
             "|" + "|".join("---" if i == 0 or not _numeric(df[c]) else "---:"
                            for i, c in enumerate(cols)) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(esc(v) for v in row.tolist()) + " |")
    return "\n".join(lines)


def _numeric(col: pd.Series) -> bool:
    return all(str(v)[:1].isdigit() or str(v)[:1] in "-—=+" for v in col)


def numeric_cells(df: pd.DataFrame, arch: memory.Architecture | None) -> pd.DataFrame:
    """One row per measured cell with the numbers behind the tables (for CSV/parquet and notebooks)."""
    k = analysis.cells(df)
    if k.empty:
        return k
    k = analysis.with_per_gib(k)
    k["rank"] = analysis.tie_ranks(list(k.kld_mean), list(k.kld_mean_err))
    k["pareto"] = analysis.pareto(list(k.file_bytes), list(k.kld_mean))
    if arch is not None:
        k["kv_bytes"] = [sum(arch.kv_bytes(tk, tv, int(c))) for tk, tv, c in zip(k.type_k, k.type_v, k.ctx)]
    keep = ["rank", "weights", "weights_type", "type_k", "type_v", "ctx", "n_chunks", "kld_mean", "kld_mean_err",
            "kld_median", "kld_p99", "kld_p99_9", "kld_max", "ppl_q", "ppl_q_err", "ppl_ratio", "ppl_ratio_err",
            "same_top", "same_top_err", "dp_mean", "dp_mean_err", "rms_dp", "rms_dp_err", "file_bytes",
            "tensor_bytes", "bpw", "tensor_mix_json", "fallback_tensors", "kv_bytes", "pp_test", "pp_ts",
            "pp_ts_std", "pp_unsteady", "tg_test", "tg_ts", "tg_ts_std", "tg_unsteady",
            "inv_ppl_per_gib", "inv_kld_per_gib", "same_top_per_gib", "pareto", "corpus", "toolchain_commit",
            "toolchain_backends", "job_key"]
    return k[[c for c in keep if c in k]]


def write(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    try:
        arch = analysis.architecture(df)
    except memory.MemoryModelError:
        arch = None
    kv = tables.kv_table(df, arch.kv_bytes if arch else None)
    stats, fails = tables.stats_table(df), tables.failures(df)
    prov = tables.provenance(df)
    written = []
    for stem, t in (("kv_table", kv), ("stats", stats), ("failures", fails),
                    ("cells", numeric_cells(df, arch))):
        csv, parquet = out / f"{stem}.csv", out / f"{stem}.parquet"
        if t.empty:
            csv.unlink(missing_ok=True)
            parquet.unlink(missing_ok=True)
            continue
        write_text_atomic(csv, t.to_csv(index=False))
        with atomic_path(parquet) as tmp:
            t.to_parquet(tmp, index=False)
        written += [csv, parquet]
    figures = plots.write_all(df, out)
    written += figures
    shown = [(stem, title) for stem, title in PLOTS if (out / f"{stem}.png").exists()]

    readme = out / "README.md"
    write_text_atomic(readme, _readme(name, prov, kv, stats, fails, shown))
    card = out / "model-card.md"
    write_text_atomic(card, _model_card(name, prov, kv, shown))
    page = out / "report.html"
    write_text_atomic(page, _html(name, prov, kv, stats, fails, shown, out))
    return [readme, card, page, *written]


def _readme(name, prov, kv, stats, fails, shown) -> str:
    parts = [f"# quantsweep report: {name}", "",
             "Regenerated from the quantsweep store with `quantsweep report`; every number below comes "
             "from a llama.cpp tool run recorded there. Also here: `model-card.md` (for a Hugging Face model "
             "card), `report.html` (one self-contained page), the tables as CSV and parquet (`cells.*`: the "
             "numbers, one row per cell).", "",
             "## How it was made", ""]
    parts += [f"- **{k}**: {v}" for k, v in prov.items()]
    parts += ["", EXPLAIN, ""]
    if not kv.empty:
        parts += ["## Weights × K/V cache", "", markdown_table(kv), ""]
    if shown:
        parts += ["## Plots", ""]
        parts += [f"### {title}\n\n![{title}]({stem}.png)\n" for stem, title in shown]
    if not stats.empty:
        parts += ["## Full statistics", "", markdown_table(stats), ""]
    if not fails.empty:
        parts += ["## Failed cells", "", markdown_table(fails), ""]
    return "\n".join(parts)


def _model_card(name, prov, kv, shown) -> str:
    keep = [c for c in ("Rank", "Weights", "cache-type-k", "cache-type-v", "ctx", "KLD", "PPL ratio", "Same top p",
                        "File MiB", "BPW", "Tensor mix", "K/V MiB") if c in kv]
    parts = ["## Quantization quality", "",
             f"How far each quant and K/V-cache type moves the model's token distributions from the "
             f"reference, measured with llama.cpp's `llama-perplexity --kl-divergence` "
             f"(quantsweep recipe `{name}`). Lower KLD is closer; "
             "± is one standard error; cells within the error of each other share a rank.", ""]
    if not kv.empty:
        parts += [markdown_table(kv[keep]), ""]
    for stem, title in shown[:2]:
        parts += [f"![{title}]({stem}.png)", ""]
    parts += ["<details><summary>How it was made</summary>", ""]
    parts += [f"- **{k}**: {v}" for k, v in prov.items()]
    parts += ["", "</details>", ""]
    return "\n".join(parts)


def _html(name, prov, kv, stats, fails, shown, out: Path) -> str:
    def table(t: pd.DataFrame) -> str:
        return t.to_html(index=False, border=0, classes="t", escape=True)

    def img(stem: str, title: str) -> str:
        data = base64.b64encode((out / f"{stem}.png").read_bytes()).decode()
        return f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}"/>' \
               f"<figcaption>{html.escape(title)}</figcaption></figure>"

    body = [f"<h1>quantsweep report: {html.escape(name)}</h1>", "<h2>How it was made</h2><ul>"]
    body += [f"<li><b>{html.escape(k)}</b>: {html.escape(str(v).strip('`'))}</li>" for k, v in prov.items()]
    body += ["</ul>", f"<p>{html.escape(EXPLAIN.replace('`', ''))}</p>"]
    if not kv.empty:
        body += ["<h2>Weights × K/V cache</h2>", table(kv)]
    if shown:
        body += ["<h2>Plots</h2>"] + [img(stem, title) for stem, title in shown]
    if not stats.empty:
        body += ["<h2>Full statistics</h2>", '<div class="wide">', table(stats), "</div>"]
    if not fails.empty:
        body += ["<h2>Failed cells</h2>", table(fails)]
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
             "table.t{border-collapse:collapse;font-size:12px}table.t td,table.t th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
             "table.t td:first-child,table.t th:first-child{text-align:left}.wide{overflow-x:auto}"
             "figure{margin:1em 0}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>quantsweep report: {html.escape(name)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
