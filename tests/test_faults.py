"""Fast representatives of the fault classes `make chaos` injects at scale (tests/chaos.py)."""

import hashlib
import sqlite3

import pytest

from orchestrator.cli import main
from orchestrator.store import MIGRATIONS, Store


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store_of_something_else(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
    db.execute("INSERT INTO photos VALUES (1, 'a')")
    db.commit()
    db.close()


def _store_from_the_future(path):
    Store(path).db.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_bytes(b"\x00garbage" * 600), "not a quantsweep store (file is not a database)"),
    (_store_of_something_else, "an SQLite database of something else (tables: photos)"),
    (_store_from_the_future, f"written by a newer quantsweep (store version {len(MIGRATIONS) + 1}"),
])
@pytest.mark.parametrize("command", ["report", "recommend", "export"])
def test_a_store_that_is_not_ours_is_named_and_left_untouched(tmp_path, capsys, make, says, command):
    ws = tmp_path / "ws"
    ws.mkdir()
    store = ws / "store.sqlite"
    make(store)
    before = _digest(store)
    args = {"report": ["report", "demo"], "recommend": ["recommend", "demo", "--vram", "24GiB", "--ctx", "4096"],
            "export": ["export", "--output", str(tmp_path / "x.csv")]}[command]
    assert main([*args, "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(store) in err[0] and says in err[0]
    assert _digest(store) == before and not (ws / "store.sqlite-wal").exists()
