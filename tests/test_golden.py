"""The demo's report from a committed store, compared byte for byte, and an old store upgraded and read."""

import shutil
import sqlite3

import pandas as pd
import pytest

from orchestrator.cli import main
from orchestrator.results.store import MIGRATIONS

from .helpers import FIXTURES

GOLDEN = FIXTURES / "golden" / "demo"
STORES = FIXTURES / "stores"


def _workspace(tmp_path, name: str):
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copyfile(STORES / name, ws / "store.sqlite")
    return ws


@pytest.mark.parametrize("name", ["README.md", "stats.csv", "kv_table.csv", "model-card.md", "cells.csv"])
def test_demo_report_is_the_golden_one(tmp_path, name):
    ws = _workspace(tmp_path, "demo-v3.sqlite")
    assert main(["report", "demo", "--workspace", str(ws), "--out", str(tmp_path / "out")]) == 0
    got, want = (tmp_path / "out" / name).read_text(), (GOLDEN / name).read_text()
    assert got == want, f"{name} changed; if intended, regenerate tests/fixtures/golden/demo (see its stores README)"


def test_a_version_1_store_is_upgraded_and_reads_the_same_numbers(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QUANTSWEEP_CACHE", str(tmp_path / "cache"))  # no metadata memo of the model either
    ws = _workspace(tmp_path, "demo-v1.sqlite")
    db = sqlite3.connect(ws / "store.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "model_arch_json" not in {r[1] for r in db.execute("PRAGMA table_info(results)")}
    db.close()

    assert main(["report", "demo", "--workspace", str(ws), "--out", str(tmp_path / "out")]) == 0
    db = sqlite3.connect(ws / "store.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    added = {r[1] for r in db.execute("PRAGMA table_info(results)")} >= {"model_arch_json", "tensor_mix_json",
                                                                         "fallback_tensors"}
    assert added
    assert db.execute("SELECT count(*) FROM results").fetchone()[0] == 54
    db.close()
    # every measured number survives the upgrade: the stats table equals the golden one, but for the
    # tensor mix, which version 1 did not record and is shown as unknown, not guessed
    got = pd.read_csv(tmp_path / "out" / "stats.csv", dtype=str).set_index("Statistic")
    want = pd.read_csv(GOLDEN / "stats.csv", dtype=str).set_index("Statistic")
    assert (got.loc["Tensor mix (bytes)"] == "—").all()
    pd.testing.assert_frame_equal(got.drop("Tensor mix (bytes)"), want.drop("Tensor mix (bytes)"))
    # a question the old rows cannot answer (its memory needs the architecture version 2 added) says how to
    # get it, exit 2, instead of guessing
    capsys.readouterr()
    assert main(["recommend", "demo", "--workspace", str(ws), "--vram", "320MiB", "--reserve", "0",
                 "--max-kld", "0.01"]) == 2
    assert "does not record the model's architecture: run `quantsweep run`" in capsys.readouterr().err


def test_a_version_1_store_is_upgraded_once(tmp_path):
    ws = _workspace(tmp_path, "demo-v1.sqlite")
    for _ in range(2):
        assert main(["export", "--workspace", str(ws), "--format", "csv", "-o", str(tmp_path / "c.csv")]) == 0
    df = pd.read_csv(tmp_path / "c.csv")
    assert len(df) == 54 and df.kld_mean.notna().sum() == 18


def test_each_migration_is_frozen_text_and_the_latest_holds_every_column(tmp_path):
    """Version 1 built from its frozen statements is the version 1 stores were written with (the committed
    store's schema, statement for statement); every version upgrades it; the columns the code writes are
    exactly those the migrations make, so a new column cannot come without its migration."""
    from orchestrator.results.store import COLUMNS, Store

    old = sqlite3.connect(STORES / "demo-v1.sqlite")
    written = [sql for (sql,) in old.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")]
    old.close()
    assert written == MIGRATIONS[0]
    db = sqlite3.connect(tmp_path / "v1.sqlite")
    for sql in MIGRATIONS[0]:
        db.execute(sql)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = Store(tmp_path / "v1.sqlite")  # upgrades it to the latest version
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    made = [r[1] for r in store.db.execute("PRAGMA table_info(results)")]
    assert set(made) - {"id"} == set(COLUMNS)
