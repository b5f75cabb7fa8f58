"""The columnar copy of the results (snapshot.py): read instead of SQLite, never stale, rebuilt when
damaged, and the report's figures drawn in worker processes equal those drawn in this one."""

import shutil
import sqlite3

import pytest

from orchestrator.results import snapshot
from orchestrator.cli import main
from orchestrator.report import plots
from orchestrator.results.store import Store

from .helpers import FIXTURES


@pytest.fixture
def ws(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copyfile(FIXTURES / "stores" / "demo-v3.sqlite", ws / "store.sqlite")
    return ws


def _copies() -> list:
    return sorted(snapshot.folder().glob("*.parquet")) if snapshot.folder().is_dir() else []


def test_a_read_makes_one_copy_and_the_next_read_uses_it(ws):
    before = set(_copies())
    store = Store(ws / "store.sqlite")
    first = store.results("demo")
    made = set(_copies()) - before
    assert len(made) == 1
    copy = made.pop()
    assert len(first) == 54 and first.kld_mean.notna().sum() == 18
    # the copy is what is read: a value changed in it (and only there) is what the next read gives
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(copy)
    t = t.set_column(t.column_names.index("kld_mean"), "kld_mean", pc.multiply(t["kld_mean"], 2.0))
    pq.write_table(t, copy)
    again = store.results("demo")
    assert set(_copies()) - before == {copy}
    assert again.kld_mean.sum() == pytest.approx(2 * first.kld_mean.sum())


def test_one_copy_serves_every_recipe_and_the_whole_store(ws, tmp_path):
    """The copy a run makes at its end (of its recipe's read) is the one `export` of the whole store and
    a read of another recipe use: filtered, never a second copy."""
    import pandas as pd

    store = Store(ws / "store.sqlite")
    demo = store.results("demo")
    other = demo.drop(columns=["id"]).assign(recipe="other", kld_mean=demo.kld_mean * 3)
    store.put_results(other.to_dict("records"))
    before = set(_copies())
    assert store.results("demo").kld_mean.sum() == pytest.approx(demo.kld_mean.sum())
    made = set(_copies()) - before
    assert len(made) == 1
    got = store.results("other")
    assert len(got) == 54 and set(got.recipe) == {"other"}
    assert got.kld_mean.sum() == pytest.approx(3 * demo.kld_mean.sum())
    assert store.results("nothing-of-that-name").empty
    assert main(["export", "--workspace", str(ws), "--format", "csv", "-o", str(tmp_path / "all.csv")]) == 0
    assert pd.read_csv(tmp_path / "all.csv").recipe.value_counts().to_dict() == {"demo": 54, "other": 54}
    assert set(_copies()) - before == made


def test_any_change_of_the_results_gives_a_new_copy_never_the_stale_one(ws):
    store = Store(ws / "store.sqlite")
    old = store.results("demo")
    row = old[old.measurement == "kld"].iloc[0]
    # a write through quantsweep
    rows = old[old.cell_id == row.cell_id].drop(columns=["id"]).to_dict("records")
    for r in rows:
        if r["measurement"] == "kld":
            r["kld_mean"] = 1.25
    store.put_results(rows)
    assert store.results("demo").set_index("cell_id").loc[row.cell_id].query("measurement == 'kld'").kld_mean.iloc[0] \
        == 1.25
    # and one by hand, behind quantsweep's back: the triggers see it too
    db = sqlite3.connect(ws / "store.sqlite")
    db.execute("UPDATE results SET kld_mean = 2.5 WHERE cell_id = ? AND measurement = 'kld'", (row.cell_id,))
    db.commit()
    db.close()
    fresh = Store(ws / "store.sqlite").results("demo")
    assert fresh[(fresh.cell_id == row.cell_id) & (fresh.measurement == "kld")].kld_mean.iloc[0] == 2.5


def test_a_damaged_copy_is_made_again(ws):
    store = Store(ws / "store.sqlite")
    want = store.results("demo")
    for copy in _copies():
        copy.write_bytes(b"PAR1 not really")
    assert store.results("demo").equals(want)


def test_a_column_of_mixed_types_is_read_as_text(ws):
    db = sqlite3.connect(ws / "store.sqlite")
    db.execute("UPDATE results SET reason = 42 WHERE id = (SELECT min(id) FROM results)")
    db.commit()
    db.close()
    df = Store(ws / "store.sqlite").results("demo")
    assert "42" in set(df.reason.dropna())


def test_a_store_read_as_it_is_without_the_token_is_read_directly(ws, tmp_path):
    # compare opens another workspace's store read-only: a version-3 store has no token and stays version 3
    before = set(_copies())
    df = Store.read_only(ws / "store.sqlite").results("demo", provenance=False)
    assert len(df) == 54 and set(_copies()) == before
    assert sqlite3.connect(ws / "store.sqlite").execute("PRAGMA user_version").fetchone()[0] == 3


def test_export_csv_comes_from_the_copy_and_keeps_every_row(ws, tmp_path):
    import pandas as pd

    assert main(["export", "--workspace", str(ws), "--format", "csv", "-o", str(tmp_path / "all.csv")]) == 0
    got = pd.read_csv(tmp_path / "all.csv")
    want = Store(ws / "store.sqlite").results()
    assert len(got) == len(want) == 54
    assert list(got.columns) == list(want.columns)
    assert got.kld_mean.sum() == pytest.approx(want.kld_mean.sum(), rel=1e-12)


def test_figures_drawn_in_worker_processes_equal_those_drawn_here(ws, tmp_path, monkeypatch):
    from concurrent.futures import ProcessPoolExecutor

    submitted = []
    submit = ProcessPoolExecutor.submit

    def counted(pool, fn, *args, **kw):
        submitted.append(fn)
        return submit(pool, fn, *args, **kw)

    with monkeypatch.context() as m:  # two CPUs, whatever this machine has: the figures go to workers
        m.setattr(plots, "_cpus", lambda: 2)
        m.setattr(ProcessPoolExecutor, "submit", counted)
        assert main(["report", "demo", "--workspace", str(ws), "--out", str(tmp_path / "forked")]) == 0
    assert len(submitted) == 4  # every figure drawn in a worker process

    def no_process(*_, **__):
        raise OSError(11, "Resource temporarily unavailable")  # what fork says at a process limit

    with monkeypatch.context() as m:
        m.setattr(ProcessPoolExecutor, "submit", no_process)
        assert main(["report", "demo", "--workspace", str(ws), "--out", str(tmp_path / "refused")]) == 0
    monkeypatch.setattr(plots, "_cpus", lambda: 1)
    assert main(["report", "demo", "--workspace", str(ws), "--out", str(tmp_path / "here")]) == 0
    figures = sorted(p.name for p in (tmp_path / "here").iterdir() if p.suffix in (".svg", ".png"))
    assert len(figures) == 8
    for name in figures:
        for other in ("forked", "refused"):
            assert (tmp_path / other / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), (other, name)
