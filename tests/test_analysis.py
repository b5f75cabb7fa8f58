"""Answers from store rows: ties within ±, the Pareto frontier, recommend's choices, compare's flags."""

import json

import pandas as pd
import pytest

from orchestrator.output import Output
from orchestrator.report import analysis
from orchestrator.plan import memory

from .helpers import SMOLLM2


def rows(cells, recipe="r", arch=True):
    """Store-shaped KLD rows for (weights, K, V, kld, err, file MiB)."""
    out = []
    for w, tk, tv, kld, err, mib in cells:
        out.append({"recipe": recipe, "measurement": "kld", "status": "ok", "weights": w, "type_k": tk,
                    "type_v": tv, "ctx": 256, "kld_mean": kld, "kld_mean_err": err, "ppl_q": 10 + kld,
                    "ppl_ratio": 1 + kld, "ppl_ratio_err": err, "same_top": 90 - kld, "same_top_err": 1.0,
                    "file_bytes": mib * 2**20, "tensor_bytes": mib * 2**20, "corpus": "python-docs",
                    "n_vocab": 49152, "test": "", "n_gen": None, "n_prompt": None, "n_depth": None,
                    "ts_mean": None, "ts_std": None, "source_sha256": "x",
                    "model_arch_json": json.dumps({"architecture": "llama", "hparams": SMOLLM2}) if arch else None})
    return pd.DataFrame(out)


MATRIX = [("Q8_0", "f16", "f16", 0.0040, 0.0002, 138), ("Q8_0", "q8_0", "q8_0", 0.0042, 0.0002, 138),
          ("Q8_0", "q4_0", "q4_0", 0.0568, 0.0045, 138), ("Q4_K_M", "f16", "f16", 0.0472, 0.0019, 101),
          ("Q4_K_M", "q8_0", "q8_0", 0.0486, 0.0020, 101), ("Q2_K", "f16", "f16", 0.3865, 0.0114, 84)]


def test_ties_share_a_rank_and_the_next_rank_skips():
    assert analysis.tie_ranks([0.0040, 0.0042, 0.0568, 0.0472], [0.0002, 0.0002, 0.0045, 0.0019]) == \
        ["=1", "=1", "=3", "=3"]
    assert analysis.tie_ranks([0.1, 0.2, 0.3], [0.001, 0.001, 0.001]) == ["1", "2", "3"]


def test_pareto_keeps_only_cells_nothing_smaller_beats():
    sizes, klds = [138, 138, 101, 101, 84], [0.004, 0.0042, 0.047, 0.003, 0.39]
    assert analysis.pareto(sizes, klds) == [False, False, False, True, True]


def test_per_gib_metrics():
    k = analysis.with_per_gib(analysis.cells(rows(MATRIX)))
    r = k.iloc[0]
    assert r.inv_kld_per_gib == pytest.approx(1 / 0.0040 / (138 / 1024))
    assert r.same_top_per_gib == pytest.approx((90 - 0.0040) / (138 / 1024))


def budget(mib, reserve=0):
    return analysis.Budget(vram=mib * 2**20, reserve=reserve * 2**20)


def recommend(df, mib, ctx, **kw):
    return analysis.recommend(analysis.cells(df), analysis.architecture(df), budget(mib), ctx, **kw)


# the verdicts themselves: VERDICTS below; these check what a verdict does not say

def test_recommend_lists_what_fits_and_the_best_of_the_other_strategy():
    # at 8192 tokens: f16 cache 180 MiB, q8_0 95.6, q4_0 50.6; compute allowance 114.5 MiB
    rec = recommend(rows(MATRIX), 380, 8192)  # Q8_0 + f16 needs 432.5, Q4_K_M + f16 395.5, Q2_K + f16 378.5
    assert set(rec.table.weights + "+" + rec.table.type_k) == {"Q8_0+q8_0", "Q8_0+q4_0", "Q4_K_M+q8_0",
                                                             "Q2_K+f16"}
    assert (rec.runner_up.weights, rec.runner_up.type_k) == ("Q2_K", "f16")
    assert rec.suggestions == []
    m = MATRIX + [("Q6_K", "f16", "f16", 0.0043, 0.0003, 120)]  # a tie: the runner-up is the tied one
    assert recommend(rows(m), 420, 8192).runner_up.weights == "Q6_K"  # Q6_K + f16 needs 414.5


def test_recommend_names_cells_to_add_instead_of_inventing_them():
    only_f16 = [c for c in MATRIX if c[1] == "f16"]
    rec = recommend(rows(only_f16), 400, 8192)  # Q8_0 + f16 needs 432.5 MiB; Q4_K_M and Q2_K fit
    assert rec.best.weights == "Q4_K_M" and rec.runner_up is None
    assert any("Q8_0 + q8_0/q8_0 would fit" in s and "[q8_0, q8_0]" in s for s in rec.suggestions)
    assert "the recipe measures no quantized cache cell to compare strategies with" in rec.verdict


def test_recommend_names_the_cell_that_would_fit_when_only_a_quantized_cache_reaches_the_context():
    rec = recommend(rows(MATRIX), 330, 8192)
    assert rec.runner_up is None
    # Q2_K was measured with an f16 cache only: with q8_0 it would fit, so it is named (its KLD is unknown)
    assert rec.suggestions == ["Q2_K + q8_0/q8_0 would fit (294 MiB): add the pair [q8_0, q8_0] to the "
                               "recipe's cache.pairs"]


def test_max_kld_picks_the_smallest_under_the_bound():
    rec = recommend(rows(MATRIX), 1024, 4096, max_kld=0.05)
    assert (rec.best.weights, rec.best.type_k) == ("Q4_K_M", "q8_0")  # smaller than Q4_K_M + f16
    assert "Smallest configuration with KLD ≤ 0.05: Q4_K_M + q8_0/q8_0 (259 MiB at ctx 4096" in rec.verdict
    rec = recommend(rows(MATRIX), 310, None, max_kld=0.05)  # no context asked: the smallest weights
    assert rec.verdict.startswith("Smallest configuration with KLD ≤ 0.05: Q4_K_M + q8_0/q8_0 (101 MiB of "
                                  "weights, reaching 7936 tokens")


def test_ctx_max_ranks_by_context_reached_capped_at_the_trained_length():
    # each token costs its K/V plus 1 KiB of attention mask in the compute buffer
    rec = recommend(rows(MATRIX), 310, None)
    reached = dict(zip(rec.table.weights + " " + rec.table.type_k, rec.table.ctx_reached))
    assert reached["Q8_0 q4_0"] == 8192  # 9152 would fit: the trained context caps it
    assert reached["Q8_0 q4_0"] > reached["Q8_0 q8_0"] == 5120 > reached["Q8_0 f16"] == 2816
    assert reached["Q2_K f16"] == 5120
    assert rec.verdict.startswith("Longest context on 310 MiB: Q8_0 + q4_0/q4_0 reaches 8192 tokens")
    # and it says that the model, not the memory, stopped it there
    assert "1 of 6 configurations reach the model's trained context (8192 tokens), where the search stops: " \
        "for them the model, not the memory, is the limit" in " ".join(rec.notes)
    assert not any("trained context" in n for n in recommend(rows(MATRIX), 200, None).notes)


def test_architecture_comes_from_the_store_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTSWEEP_CACHE", str(tmp_path))
    assert analysis.architecture(rows(MATRIX)).n_layer == 30
    with pytest.raises(memory.MemoryModelError, match="run `quantsweep run` on the recipe once more"):
        analysis.architecture(rows(MATRIX, arch=False))
    # a store from before the architecture was recorded: the metadata memo of the same file answers
    from dataclasses import asdict

    from orchestrator.inputs.gguf_info import MEMO_VERSION, GGUFInfo

    info = GGUFInfo(architecture="llama", name="", n_vocab=49152, file_type=3, tensor_bytes=1, n_params=1,
                    tensor_types={}, context_length=8192, hparams=SMOLLM2)
    (tmp_path / "gguf-info").mkdir()
    (tmp_path / "gguf-info" / f"x.{MEMO_VERSION}.json").write_text(json.dumps(asdict(info)))
    assert analysis.architecture(rows(MATRIX, arch=False)).n_layer == 30


def test_compare_flags_only_differences_beyond_their_error_and_lists_one_sided_cells():
    a = rows(MATRIX, "a")
    b_cells = [("Q8_0", "f16", "f16", 0.0046, 0.0002, 138),      # +0.0006 > 2·√2·0.0002 = 0.00057: flagged
               ("Q8_0", "q8_0", "q8_0", 0.0047, 0.0002, 138),    # +0.0005 < 0.00057: not flagged
               ("Q4_K_M", "f16", "f16", 0.0472, 0.0019, 101),
               ("Q3_K_M", "f16", "f16", 0.1139, 0.0044, 89)]    # only in B
    c = analysis.compare(a, rows(b_cells, "b"))
    both = c[c["in"] == "both"].set_index(["weights", "type_k"])
    assert both.loc[("Q8_0", "f16"), "differs"] == "KLD, PPL ratio"
    assert both.loc[("Q8_0", "q8_0"), "differs"] == ""
    assert both.loc[("Q4_K_M", "f16"), "Δ KLD"] == pytest.approx(0)
    assert both.loc[("Q8_0", "f16"), "Δ KLD ±"] == pytest.approx(2 * (2 * 0.0002**2) ** 0.5)
    one = c[c["in"] != "both"]
    assert set(zip(one.weights, one.type_k, one["in"])) == {("Q3_K_M", "f16", "B only"), ("Q8_0", "q4_0", "A only"),
                                                           ("Q4_K_M", "q8_0", "A only"), ("Q2_K", "f16", "A only")}
    assert list(c.weights[:3]) == ["Q8_0", "Q8_0", "Q8_0"]  # largest weights first


def test_recommend_uses_the_kld_measured_nearest_the_context_asked():
    short = rows(MATRIX)
    long = rows([(w, tk, tv, kld * 2, err, mib) for w, tk, tv, kld, err, mib in MATRIX]).assign(ctx=4096)
    df = pd.concat([short, long], ignore_index=True)
    rec = recommend(df, 2048, 8192)
    assert len(rec.table) == len(MATRIX) and set(rec.table.ctx) == {4096}
    assert rec.best.kld_mean == pytest.approx(0.0080)
    assert rec.notes[-1] == "each cell's KLD is the one measured at the context nearest 8192"


# every budget case of `recommend --ctx`: the verdict must say what the winner really did. Memory at
# 8192 tokens: f16 cache 180 MiB, q8_0 95.6, q4_0 50.6, compute 114.5, plus the weights' MiB.
SHRINK = [("Q8_0", "f16", "f16", 0.0040, 0.0002, 138), ("Q8_0", "q4_0", "q4_0", 0.0900, 0.0020, 138),
          ("Q4_K_M", "f16", "f16", 0.0472, 0.0019, 101)]
SAME_WEIGHTS = [("Q8_0", "f16", "f16", 0.0040, 0.0002, 138), ("Q4_K_M", "f16", "f16", 0.0472, 0.0019, 101),
                ("Q4_K_M", "q4_0", "q4_0", 0.1010, 0.0048, 101)]
BIG_QUANTIZED = [("F16", "q8_0", "q8_0", 0.0001, 0.0001, 270), ("Q2_K", "f16", "f16", 0.3865, 0.0114, 84)]
EVERYTHING_FITS_NO_TIE = [c for c in MATRIX if c[:2] != ("Q8_0", "q8_0")]
VERDICTS = [  # (case, cells, MiB, best, says, never says)
    ("nothing fits", MATRIX, 150, None, "No measured configuration fits 150 MiB at 8192 tokens", "rather than"),
    ("only a quantized cache fits", MATRIX, 330, "Q4_K_M q8_0",
     "No f16 cache configuration fits: the smallest measured, Q2_K + f16/f16, needs 378 MiB, so at this context "
     "the cache has to be quantized.", "rather than"),
    ("only an f16 cache fits", BIG_QUANTIZED, 400, "Q2_K f16",
     "No quantized cache configuration fits: the smallest measured, F16 + q8_0/q8_0, needs 480 MiB", "rather than"),
    ("both fit, the quantized cache wins", MATRIX, 380, "Q8_0 q8_0",
     "quantize the cache rather than shrink the weights", "shrink the weights rather"),
    ("both fit, smaller weights win", SHRINK, 400, "Q4_K_M f16",
     "beats the best quantized cache option, Q8_0 + q4_0/q4_0 (KLD 0.090000 ± 0.002000): shrink the weights "
     "rather than quantize the cache", "quantize the cache rather"),
    ("both fit, the f16 cache wins at the same weights", SAME_WEIGHTS, 400, "Q4_K_M f16",
     "keep the f16 cache: the quantized one buys no larger weights here", "rather than"),
    ("both fit, tied", MATRIX + [("Q6_K", "f16", "f16", 0.0043, 0.0003, 120)], 420, "Q8_0 q8_0",
     "tied within ±: either strategy", "rather than"),
    ("everything fits, tied", MATRIX, 1024, "Q8_0 f16",
     "fits with the largest measured weights and an f16 cache: neither shrink the weights nor quantize the "
     "cache. The best quantized-cache option, Q8_0 + q8_0/q8_0 (KLD 0.004200 ± 0.000200), ties with it", "rather than"),
    ("everything fits, f16 ahead", EVERYTHING_FITS_NO_TIE, 1024, "Q8_0 f16",
     "neither shrink the weights nor quantize the cache. The best quantized-cache option, Q4_K_M + q8_0/q8_0 "
     "(KLD 0.048600 ± 0.002000), is worse beyond ±.", "rather than"),
]


@pytest.mark.parametrize("case, cells, mib, best, says, never", VERDICTS, ids=[v[0] for v in VERDICTS])
def test_the_verdict_describes_the_winner_truthfully(case, cells, mib, best, says, never):
    rec = recommend(rows(cells), mib, 8192)
    assert (None if rec.best is None else f"{rec.best.weights} {rec.best.type_k}") == best
    assert says in rec.verdict, rec.verdict
    assert never not in rec.verdict, rec.verdict


def _store_with(tmp_path, df, backends):
    from orchestrator.results.store import Store

    df = df.assign(toolchain_backends=backends, cell_id=df.weights + "|" + df.type_k + "|" + df.type_v)
    Store(tmp_path / "ws" / "store.sqlite").put_results(df.to_dict("records"))
    return tmp_path / "ws"


@pytest.mark.parametrize("backends, kept", [("CPU", "0 MiB kept for the runtime: measured on a CPU build"),
                                            ("CUDA", "768 MiB kept for the runtime: measured with CUDA")])
def test_recommend_reserve_follows_the_backend_that_measured(tmp_path, backends, kept):
    from orchestrator import commands

    lines = []
    commands.recommend("r", _store_with(tmp_path, rows(MATRIX), backends), "1GiB", "4096", None, None,
                       Output(write=lines.append))
    assert kept in lines[0]
    lines.clear()
    commands.recommend("r", tmp_path / "ws", "1GiB", "4096", None, "100MiB", Output(write=lines.append))
    assert "100 MiB kept for the runtime: --reserve" in lines[0]


def test_recommend_labels_sizes_and_flags_unsteady_speed(tmp_path):
    from orchestrator import commands

    df = rows(MATRIX)
    bench = df.assign(measurement="bench", test="tg16", n_gen=16, n_prompt=0, n_depth=0,
                      ts_mean=[40.0, 9.17, 41, 42, 43, 44], ts_std=[0.5, 11.76, 0.4, 0.3, 0.2, 0.1])
    lines = []
    ws = _store_with(tmp_path, pd.concat([df, bench], ignore_index=True), "CPU")
    commands.recommend("r", ws, "1GiB", "4096", None, None, Output(write=lines.append))
    text = "\n".join(lines)
    assert "tensors MiB" in text and "weights MiB" not in text
    assert "tensors (the weights' tensor data" in text
    flagged = [ln for ln in lines if "(unsteady)" in ln]
    assert len(flagged) == 2 and "9.2 ± 11.8 (unsteady)" in flagged[0] and "--rerun bench" in flagged[1]


def _older_store(path, df):
    """A store as version 2 wrote it (before the tensor-mix columns), every connection closed."""
    import sqlite3

    from orchestrator.results.store import Store

    s = Store(path)
    s.put_results(df.assign(cell_id=df.weights + "|" + df.type_k).to_dict("records"))
    for col in ("tensor_mix_json", "source_tensor_mix_json", "fallback_tensors"):
        s.db.execute(f"ALTER TABLE results DROP COLUMN {col}")
    s.db.execute("PRAGMA user_version = 2")
    s.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    return path


def test_compare_reads_another_workspace_without_writing_and_says_what_differs(tmp_path):
    from orchestrator import commands

    _store_with(tmp_path, rows(MATRIX).assign(corpus_sha256="aaaa" * 16, model_name="m"), "CPU")
    other = tmp_path / "other"
    other.mkdir()
    store = _older_store(other / "store.sqlite", rows(MATRIX, "b").assign(
        corpus="python-source", corpus_sha256="bbbb" * 16, model_name="m", toolchain_backends="CPU"))
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in other.iterdir()}
    lines = []
    commands.compare("r", f"b@{other}", tmp_path / "ws", Output(write=lines.append))
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in other.iterdir()} == before  # no -wal, -shm
    import sqlite3

    assert sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True).execute("PRAGMA user_version").fetchone()[0] == 2
    table_at = next(i for i, ln in enumerate(lines) if ln.startswith("weights"))
    notes = lines[:table_at]
    assert any("A and B differ in corpus: python-docs (aaaaaaaaaaaa…) vs python-source (bbbbbbbbbbbb…)" in n
               for n in notes), notes
    assert not any("differ in model" in n for n in notes)


def test_a_foreign_or_newer_store_is_refused_by_compare(tmp_path):
    import sqlite3

    from orchestrator import commands
    from orchestrator.errors import UsageError

    _store_with(tmp_path, rows(MATRIX), "CPU")
    for name, make in (("junk", lambda p: p.write_bytes(b"not a database at all" * 100)),
                       ("newer", lambda p: sqlite3.connect(p).execute("PRAGMA user_version = 99"))):
        d = tmp_path / name
        d.mkdir()
        if name == "newer":
            _store_with(d, rows(MATRIX), "CPU")
        make(d / "store.sqlite") if name == "junk" else make(d / "ws" / "store.sqlite")
        where = d if name == "junk" else d / "ws"
        said = "not a quantsweep store" if name == "junk" else "written by a newer quantsweep"
        with pytest.raises(UsageError, match=said):
            commands.compare("r", f"r@{where}", tmp_path / "ws", Output(write=lambda _: None))
