"""Write a report folder: README.md (tables + how it was made) and the tables as CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..files import write_text_atomic
from . import tables


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |",
             "|" + "|".join("---" if i == 0 or df[c].dtype == object and not _numeric(df[c]) else "---:"
                            for i, c in enumerate(cols)) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(esc(v) for v in row.tolist()) + " |")
    return "\n".join(lines)


def _numeric(col: pd.Series) -> bool:
    return all(str(v)[:1].isdigit() or str(v)[:1] in "-—" for v in col)


def write(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    kv, stats, fails = tables.kv_table(df), tables.stats_table(df), tables.failures(df)
    prov = tables.provenance(df)
    written = []
    for fname, t in (("kv_table.csv", kv), ("stats.csv", stats), ("failures.csv", fails)):
        path = out / fname
        if t.empty:
            path.unlink(missing_ok=True)
            continue
        write_text_atomic(path, t.to_csv(index=False))
        written.append(path)
    parts = [f"# quantsweep report: {name}", "",
             "Regenerated from the quantsweep store with `quantsweep report`; every number below comes "
             "from a llama.cpp tool run recorded there.", "", "## How it was made", ""]
    parts += [f"- **{k}**: {v}" for k, v in prov.items()]
    parts += ["", "KLD is the mean KL divergence of each variant's token distributions from the reference's "
              "(nats, ± its standard error), from `llama-perplexity --kl-divergence`; the reference logits "
              "were computed once with an f16/f16 cache. Speed is `llama-bench` tokens/s, mean ± std over "
              "the repetitions (recomputed from the raw samples).", ""]
    if not kv.empty:
        parts += ["## Weights × K/V cache", "", markdown_table(kv), ""]
    if not stats.empty:
        parts += ["## Full statistics", "", markdown_table(stats), ""]
    if not fails.empty:
        parts += ["## Failed cells", "", markdown_table(fails), ""]
    readme = out / "README.md"
    write_text_atomic(readme, "\n".join(parts))
    return [readme, *written]
