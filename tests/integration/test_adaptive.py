"""chunks: auto — each cell measures until its KLD is known to the precision asked (its ± at most that
fraction of its mean), from one reference made for the most chunks; every statistic is exact over the
chunks the cell used, as a fixed run over that many. Real tools, the demo model."""

import pytest

from orchestrator.cli import main
from orchestrator.results.store import Store

from ..helpers import small_recipe

pytestmark = pytest.mark.integration


def _adaptive(tmp_path, model, name, precision, cap):
    path = small_recipe(tmp_path, model, name=name, weights=("Q8_0", "Q2_K"), pairs=(("f16", "f16"),), bench=False)
    path.write_text(path.read_text().replace("chunks: 3", f"chunks: auto, precision: {precision}, max_chunks: {cap}"))
    return path


def test_each_cell_stops_at_the_precision_asked_with_exact_statistics(demo_model, tmp_path):
    ws = tmp_path / "ws"
    assert main(["run", str(_adaptive(tmp_path, demo_model, "auto", 0.02, 40)), "-w", str(ws), "-q"]) == 0
    store = Store(ws / "store.sqlite")
    [base] = store.done_jobs("base")
    assert base["result"]["n_chunks"] == 40  # the reference holds the most a cell may use
    kld = {j["key"]: j["result"] for j in store.done_jobs("kld")}
    df = store.results("auto")
    rows = df[df.measurement == "kld"].set_index("weights")
    for r in kld.values():
        runs = r["chunks_runs"]
        assert runs[0] == 5  # the pilot: an eighth of the 40 on hand (at least 4)
        assert runs == sorted(runs) and runs[-1] == r["n_chunks"]
        assert r["kld_mean_err"] <= 0.02 * r["kld_mean"] or r["n_chunks"] == 40
        assert r["tokens_evaluated"] == sum(runs) * 63  # ctx 128 scores 63 tokens a chunk
    assert set(rows.n_tokens) == {r["n_chunks"] * 63 for r in kld.values()}
    assert any(len(r["chunks_runs"]) > 1 for r in kld.values())  # at least one cell needed more than its pilot
    assert any((ws / "logs").glob("kld-*/run-1/kld.stdout"))  # an earlier run's logs are kept

    # exact: a fixed run over as many chunks (served from the same reference) prints the same numbers
    n = int(rows.loc["Q2_K"].n_chunks)
    fixed = small_recipe(tmp_path, demo_model, name="fixed", chunks=n, weights=("Q2_K",), pairs=(("f16", "f16"),),
                         bench=False)
    assert main(["run", str(fixed), "-w", str(ws), "-q"]) == 0
    f = store.results("fixed")
    f = f[f.measurement == "kld"].iloc[0]
    cols = ["kld_mean", "kld_mean_err", "kld_median", "kld_p99", "kld_max", "ppl_q", "same_top", "rms_dp", "n_chunks"]
    assert [f[c] for c in cols] == [rows.loc["Q2_K"][c] for c in cols]
    assert len(store.done_jobs("base")) == 1
