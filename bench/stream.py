"""`make bench`, streamed-reference part: a gang of KLD runs fed by one reference run, against a reference run
for each KLD run (gangs of one), on the demo matrix with `logits: stream`.

Each sweep makes its models, then measures the same cells; printed: the reference runs each made, and the
wall of its KLD phase (first KLD job's start to last one's end, from the store's job records), gangs over
pairs. Run it on a quiet machine: the wall ratio is a speed figure. The numbers themselves must be equal to
the printed digit: checked.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.cli import main as qs
from orchestrator.execute import scheduler
from orchestrator.inputs import hub
from orchestrator.recipe import model as recipemod
from orchestrator.results.store import Store

from bench import scratch

REPO = Path(__file__).parents[1]
CTX, CHUNKS = 256, 8


def recipe(folder: Path, name: str, model: Path, weights: list[str]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nmodel: {{path: {model}}}\nreference: F16\nweights: [{', '.join(weights)}]\n"
                    "cache: {pairs: [[f16, f16], [q8_0, q8_0], [q4_0, q4_0]]}\n"
                    f"evaluation: {{corpus: python-docs, ctx: {CTX}, chunks: {CHUNKS}, logits: stream}}\n"
                    "bench: {enabled: false}\n")
    return path


def sweep(folder: Path, ws: Path, name: str, model: Path, weights: list[str]):
    """The KLD rows of a sweep, the reference runs its KLD jobs read, and the wall of its KLD phase."""
    import calendar
    import sqlite3
    import time

    assert qs(["run", str(recipe(folder, name, model, weights)), "-w", str(ws), "-q"]) == 0
    df = Store.read_only(ws / "store.sqlite").results(name)
    db = sqlite3.connect(ws / "store.sqlite")
    rows = db.execute("SELECT wall_s, finished_at, result_json FROM jobs WHERE kind = 'kld'").fetchall()
    ends = [calendar.timegm(time.strptime(f, "%Y-%m-%dT%H:%M:%SZ")) for _, f, _ in rows]
    span = max(ends) - min(e - w for e, (w, _, _) in zip(ends, rows))
    feeds = len({json.loads(r)["feed_s"] for _, _, r in rows})  # one reference run per gang: its own time
    return df[(df.measurement == "kld") & (df.status == "ok")], feeds, span


def main() -> int:
    demo = recipemod.load(REPO / "recipes" / "demo.yaml")
    model = hub.fetch_model(demo.model, REPO)
    weights = [w.type for w in demo.weights if w.imatrix is None]
    tmp = scratch.folder("qs-stream-")
    runs = {}
    for label, gang in (("pairs", 1), ("gangs", scheduler.GANG)):
        was, scheduler.GANG = scheduler.GANG, gang
        try:
            runs[label] = sweep(tmp, tmp / label, label, model, weights)
        finally:
            scheduler.GANG = was
    (pdf, pfeeds, pspan), (gdf, gfeeds, gspan) = runs["pairs"], runs["gangs"]
    key = ["weights", "type_k", "type_v"]
    same = pdf.sort_values(key).kld_mean.tolist() == gdf.sort_values(key).kld_mean.tolist()
    print(f"demo matrix, logits: stream, ctx {CTX}, {CHUNKS} chunks: {len(gdf)} cells")
    print(f"  reference runs: gangs {gfeeds} (up to {scheduler.GANG} readers each) / pairs {pfeeds}")
    print(f"  KLD phase wall: gangs {gspan:.0f} s / pairs {pspan:.0f} s = {gspan / pspan:.2f}")
    print(f"  every cell's KLD equal to the printed digit: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
